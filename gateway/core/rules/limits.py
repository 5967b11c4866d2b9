"""Limits from `policies/limits.toml`: connection bounds, call deadlines, per-org shares and rates. Pure.

A file with an unknown key, a wrong type or a value out of range stops the
bundle from loading, with the file, line and problem, like every policy file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .tomlfile import FileCtx, load_toml


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 4096
    handshake_timeout_s: float = 5.0
    idle_timeout_s: float = 300.0
    max_age_s: float = 3600.0
    max_concurrent_streams: int = 64
    max_message_bytes: int = 2 * 1024 * 1024
    max_metadata_bytes: int = 16 * 1024


@dataclass(frozen=True)
class CallLimits:
    first_message_timeout_s: float = 10.0
    unary_deadline_s: float = 30.0
    stream_idle_timeout_s: float = 60.0
    stream_deadline_s: float = 3600.0
    import_deadline_s: float = 21600.0
    max_calls_per_org: int = 64
    max_streams_per_org: int = 4


@dataclass(frozen=True)
class RateSpec:
    per_second: float = 500.0
    burst: float = 1000.0


@dataclass(frozen=True)
class LifecycleLimits:
    """How hard the background rewrap of a KEK rotation works while the gateway serves."""

    rewrap_batch: int = 64        # data keys per transaction
    rewrap_pause_s: float = 0.02  # between transactions, so serving keeps the writer (and the CPU)


@dataclass(frozen=True)
class Limits:
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    calls: CallLimits = field(default_factory=CallLimits)
    rate: RateSpec = field(default_factory=RateSpec)
    rate_by_kind: dict[str, RateSpec] = field(default_factory=dict)
    lifecycle: LifecycleLimits = field(default_factory=LifecycleLimits)

    def rate_for(self, kind: str) -> RateSpec:
        return self.rate_by_kind.get(kind, self.rate)


# (minimum, maximum) of each value; seconds may be fractional.
_RANGES: dict[str, tuple[float, float]] = {
    "max_connections": (16, 1_000_000),
    "handshake_timeout_s": (0.1, 300),
    "idle_timeout_s": (1, 86_400),
    "max_age_s": (1, 30 * 86_400),
    "max_concurrent_streams": (1, 10_000),
    "max_message_bytes": (64 * 1024, 64 * 1024 * 1024),
    "max_metadata_bytes": (1024, 1024 * 1024),
    "first_message_timeout_s": (0.05, 600),
    "unary_deadline_s": (0.1, 3600),
    "stream_idle_timeout_s": (0.05, 3600),
    "stream_deadline_s": (1, 7 * 86_400),
    "import_deadline_s": (1, 7 * 86_400),
    "max_calls_per_org": (1, 10_000),
    "max_streams_per_org": (1, 10_000),
    "per_second": (0.001, 1_000_000),
    "burst": (1, 10_000_000),
    "rewrap_batch": (1, 100_000),
    "rewrap_pause_s": (0, 60),
}


def _section(ctx: FileCtx, data: dict[str, Any], name: str, cls: type[Any]) -> Any:
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        raise ctx.fail(f"[{name}] must be a table", name)
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if name == "rate" and key == "kind":
            continue
        spec = known.get(key)
        if spec is None:
            raise ctx.fail(f"[{name}]: unknown key {key!r} (known: {', '.join(known)})", key)
        integer = spec.type == "int"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            raise ctx.fail(f"[{name}] {key}: must be {'an integer' if integer else 'a number'}", key)
        low, high = _RANGES[key]
        if not low <= value <= high:
            raise ctx.fail(f"[{name}] {key}: must be between {low:g} and {high:g}", key)
        values[key] = value if integer else float(value)
    return cls(**values)


def load_limits(path: Path, kinds: tuple[str, ...]) -> Limits:
    """The limits file, or the built-in defaults when the bundle has none; `kinds`: the capability table's."""
    if not path.exists():
        return Limits()
    data, text = load_toml(path)
    ctx = FileCtx(path, text)
    unknown = set(data) - {"connections", "calls", "rate", "lifecycle"}
    if unknown:
        raise ctx.fail(f"unknown top-level keys {sorted(unknown)}", sorted(unknown)[0])
    connections = _section(ctx, data, "connections", ConnectionLimits)
    calls = _section(ctx, data, "calls", CallLimits)
    rate = _section(ctx, data, "rate", RateSpec)
    by_kind: dict[str, RateSpec] = {}
    per_kind = data.get("rate", {}).get("kind", {})
    if not isinstance(per_kind, dict):
        raise ctx.fail("[rate.kind] must be a table of organisation kinds", "kind")
    for kind, raw in per_kind.items():
        if kind not in kinds:
            raise ctx.fail(f"[rate.kind.{kind}]: unknown organisation kind (known: {', '.join(kinds)})", kind)
        merged = {"per_second": rate.per_second, "burst": rate.burst}
        spec = _section(ctx, {"rate": raw}, "rate", RateSpec) if isinstance(raw, dict) else None
        if spec is None:
            raise ctx.fail(f"[rate.kind.{kind}] must be a table", kind)
        merged.update({k: getattr(spec, k) for k in raw})
        by_kind[kind] = RateSpec(**merged)
    return Limits(connections, calls, rate, by_kind, _section(ctx, data, "lifecycle", LifecycleLimits))
