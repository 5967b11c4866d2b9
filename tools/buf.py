"""buf without node or npm: `make proto-lint` and `make proto-release` (docs/api-compatibility.md).

buf ships on npm as @bufbuild/buf plus one package per platform holding the binary. tools/buf/package-lock.json
(made by npm) pins them: each platform package's tarball URL and its sha512 integrity. This script downloads the
one for this machine from that URL, checks the integrity before anything is extracted, and keeps the binary in
build/buf/ (gitignored) until the lock changes. So `make test` needs only Python, and a tampered or truncated
download is refused, never run.

    python tools/buf.py path      # ensure the binary, print its path
    python tools/buf.py check     # buf lint, and buf breaking against the released custos.v1
    python tools/buf.py release   # at a release only: record proto/ as the released custos.v1
    python tools/buf.py -- ARGS   # run buf with ARGS (e.g. `-- lint --error-format=json`)

Downloads honour what npm honours: the proxy in HTTPS_PROXY / HTTP_PROXY (or npm_config_https_proxy /
npm_config_proxy) and NO_PROXY, a registry mirror in npm_config_registry (the lock's registry.npmjs.org URLs
are moved to it, as npm does; the integrity still decides), a CA bundle in npm_config_cafile. CUSTOS_BUF names
a buf binary to use instead (e.g. on a platform npm has no package for); it must be the locked version.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import ssl
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "tools" / "buf" / "package-lock.json"
CACHE = ROOT / "build" / "buf"
RELEASED = ROOT / "proto" / "released"
PYPROJECT = ROOT / "pyproject.toml"
DEFAULT_REGISTRY = "https://registry.npmjs.org/"
MEMBER = "package/bin/buf"

# (platform.system(), platform.machine()) -> npm platform package; the names install.js of @bufbuild/buf uses.
PACKAGES = {
    ("Linux", "x86_64"): "@bufbuild/buf-linux-x64",
    ("Linux", "amd64"): "@bufbuild/buf-linux-x64",
    ("Linux", "aarch64"): "@bufbuild/buf-linux-aarch64",
    ("Linux", "arm64"): "@bufbuild/buf-linux-aarch64",
    ("Linux", "armv7l"): "@bufbuild/buf-linux-armv7",
    ("Darwin", "x86_64"): "@bufbuild/buf-darwin-x64",
    ("Darwin", "arm64"): "@bufbuild/buf-darwin-arm64",
}


class BufError(Exception):
    """A refusal with a message for the person at the terminal (never a traceback)."""


@dataclass(frozen=True)
class Pinned:
    package: str
    version: str
    url: str
    integrity: str


def platform_package(system: str | None = None, machine: str | None = None) -> str:
    """The npm package holding buf for this machine (`uname -s`, `uname -m`), or a clear refusal."""
    system = system or platform.system()
    machine = machine or platform.machine()
    try:
        return PACKAGES[(system, machine)]
    except KeyError:
        known = ", ".join(sorted({f"{s} {m}" for s, m in PACKAGES}))
        raise BufError(f"no buf package on npm for {system} {machine} (known: {known}); install buf "
                       f"{locked_version()} yourself and set CUSTOS_BUF to its path") from None


def _lock(lock: Path) -> dict[str, dict[str, object]]:
    try:
        packages = json.loads(lock.read_text())["packages"]
    except (OSError, ValueError, KeyError) as e:
        raise BufError(f"cannot read the buf lock {lock}: {e}") from None
    if not isinstance(packages, dict):
        raise BufError(f"the buf lock {lock} has no packages")
    return packages


def locked_version(lock: Path = LOCK) -> str:
    entry = _lock(lock).get("node_modules/@bufbuild/buf", {})
    return str(entry.get("version", "?"))


def pinned(package: str, lock: Path = LOCK) -> Pinned:
    """The lock's URL and integrity for a package: npm resolved and hashed them, so nothing is resolved here."""
    entry = _lock(lock).get(f"node_modules/{package}")
    if not entry or not all(isinstance(entry.get(k), str) for k in ("version", "resolved", "integrity")):
        raise BufError(f"{package} is not pinned with a URL and an integrity in {lock}; remake it with "
                       "`npm install --package-lock-only --omit-lockfile-registry-resolved=false` in tools/buf")
    return Pinned(package, str(entry["version"]), str(entry["resolved"]), str(entry["integrity"]))


def registry_url(url: str) -> str:
    """The lock's URL moved to npm_config_registry when one is set (npm's replace-registry-host)."""
    registry = os.environ.get("npm_config_registry") or os.environ.get("NPM_CONFIG_REGISTRY")
    if registry and url.startswith(DEFAULT_REGISTRY):
        return registry.rstrip("/") + "/" + url[len(DEFAULT_REGISTRY):]
    return url


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _opener() -> urllib.request.OpenerDirector:
    """Proxies as npm finds them: its own settings first, then the usual variables; https falls back to the http one."""
    proxies = urllib.request.getproxies()  # HTTPS_PROXY, HTTP_PROXY, NO_PROXY (either case)
    http = _env("npm_config_proxy", "NPM_CONFIG_PROXY") or proxies.get("http")
    https = _env("npm_config_https_proxy", "NPM_CONFIG_HTTPS_PROXY") or proxies.get("https") or http
    proxies.update({k: v for k, v in (("http", http), ("https", https)) if v})
    cafile = _env("npm_config_cafile", "NPM_CONFIG_CAFILE")
    context = ssl.create_default_context(cafile=cafile)
    return urllib.request.build_opener(urllib.request.ProxyHandler(proxies),
                                       urllib.request.HTTPSHandler(context=context))


def _expected_sha512(integrity: str) -> bytes:
    for item in integrity.split():
        algo, _, digest = item.partition("-")
        if algo == "sha512":
            try:
                return base64.b64decode(digest, validate=True)
            except ValueError:
                break
    raise BufError(f"the lock's integrity {integrity!r} has no sha512 digest")


def download(pin: Pinned, dest: Path) -> None:
    """Fetch the tarball to dest, refusing (and removing it) unless its sha512 is the lock's."""
    expected = _expected_sha512(pin.integrity)
    url = registry_url(pin.url)
    digest = hashlib.sha512()
    try:
        with _opener().open(url, timeout=120) as response, dest.open("wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as e:
        dest.unlink(missing_ok=True)
        raise BufError(f"cannot download {pin.package} {pin.version} from {url}: {e}") from None
    if digest.digest() != expected:
        dest.unlink(missing_ok=True)
        raise BufError(f"{pin.package} {pin.version} from {url} does not match the lock's sha512 integrity: "
                       "refused, nothing extracted")


def extract(tarball: Path, dest: Path) -> None:
    """Only the one binary is taken from the verified tarball, written beside dest and renamed into place."""
    tmp = dest.with_name(dest.name + ".part")
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.getmember(MEMBER)
            source = tar.extractfile(member) if member.isfile() else None
            if source is None:
                raise BufError(f"{MEMBER} in the buf package is not a file")
            with tmp.open("wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
        tmp.chmod(0o755)
        os.replace(tmp, dest)
    except (tarfile.TarError, KeyError, OSError) as e:
        raise BufError(f"the buf package has no usable {MEMBER}: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)


def ensure(lock: Path = LOCK, cache: Path = CACHE, package: str | None = None) -> Path:
    """The path of the locked buf, downloaded and verified once; a changed lock fetches again."""
    override = os.environ.get("CUSTOS_BUF")
    if override:
        return _checked_override(Path(override), locked_version(lock))
    pin = pinned(package or platform_package(), lock)
    home = cache / f"{pin.package.split('/')[-1]}-{pin.version}"
    binary, stamp = home / "buf", home / "integrity"
    if binary.is_file() and stamp.is_file() and stamp.read_text() == pin.integrity:
        return binary
    home.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    binary.unlink(missing_ok=True)  # a refused fetch leaves nothing to run
    tarball = home / "package.tgz"
    try:
        download(pin, tarball)
        extract(tarball, binary)
    finally:
        tarball.unlink(missing_ok=True)
    stamp.write_text(pin.integrity)
    return binary


def _checked_override(binary: Path, version: str) -> Path:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise BufError(f"CUSTOS_BUF={binary} does not run: {e}") from None
    if out.stdout.strip() != version:
        raise BufError(f"CUSTOS_BUF={binary} is buf {out.stdout.strip()}; the lock pins {version}")
    return binary


def package_version() -> str:
    return str(tomllib.loads(PYPROJECT.read_text())["project"]["version"])


def _version_key(path: Path) -> tuple[int, ...]:
    m = re.fullmatch(r"custos\.v1-(\d+(?:\.\d+)*)\.json", path.name)
    return tuple(int(p) for p in m[1].split(".")) if m else ()


def baseline(released: Path = RELEASED) -> Path:
    """The newest released custos.v1 image: what `buf breaking` compares proto/ with."""
    images = sorted((p for p in released.glob("custos.v1-*.json") if _version_key(p)), key=_version_key)
    if not images:
        raise BufError(f"no released custos.v1 image in {released}; `make proto-release` records one at a release")
    return images[-1]


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def run(buf: Path, *args: str) -> int:
    return subprocess.run([str(buf), *args], cwd=ROOT).returncode


def check(buf: Path) -> int:
    """Both checks, both reported: lint (STANDARD, per-rpc exceptions) and breaking (FILE) against the release."""
    against = baseline()
    lint = run(buf, "lint")
    breaking = run(buf, "breaking", "--against", _shown(against))
    if lint == 0 and breaking == 0:
        print(f"buf lint clean; no breaking change against {_shown(against)}")
    return 1 if lint or breaking else 0


def release(buf: Path, version: str, released: Path = RELEASED) -> Path:
    """proto/ as custos.v1 of this release, as an image buf compares against. A release's image never changes."""
    released.mkdir(parents=True, exist_ok=True)
    target = released / f"custos.v1-{version}.json"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "image.json"
        if run(buf, "build", "--exclude-source-info", "-o", str(raw)) != 0:
            raise BufError("buf build failed on proto/")
        # Indented, so a release's diff shows what changed in the API.
        text = json.dumps(json.loads(raw.read_text()), indent=1, sort_keys=True) + "\n"
    if target.exists() and target.read_text() != text:
        raise BufError(f"{_shown(target)} already records release {version} and proto/ differs from it: "
                       "a released baseline never changes; bump the version in pyproject.toml for a new release")
    target.write_text(text)
    return target


def main(argv: list[str]) -> int:
    try:
        if argv == ["path"]:
            print(ensure())
            return 0
        if argv == ["check"]:
            return check(ensure())
        if argv == ["release"]:
            target = release(ensure(), package_version())
            print(f"recorded {_shown(target)}: `make proto-lint` now checks against it")
            return 0
        if argv[:1] == ["--"]:
            return run(ensure(), *argv[1:])
    except BufError as e:
        print(f"buf: {e}", file=sys.stderr)
        return 1
    print(__doc__.strip().split("\n\n")[2], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
