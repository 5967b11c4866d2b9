"""deploy/: the Kubernetes manifests, compose.yaml, the Containerfile and the compose proxy, checked offline.

Schemas first (the Kubernetes JSON schemas kubernetes-validate bundles, for the pinned version; the
compose-spec schema check-jsonschema vendors), then what a schema cannot know and we do: the probes ask
the port the container passes to `--health`, every file the pods mount is one `custos init` writes and
sits where `custos serve` looks for it, the NetworkPolicy lets in and out only what it says, the
proxy's limits are deploy/haproxy.cfg's, no key material is in deploy/, the image installs the lock
with --require-hashes. Each check is shown to fail on a broken copy (the mutation tests). Finally the
pod's own layout (a data directory made only of the mounted items, read-only 0400 keys) serves on
PostgreSQL and deploy/probe.py reads SERVING from its health port.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway import cli
from tests.conftest import Served
from tests.pg import PgServer
from tests.test_proxy import haproxy_binary

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose.yaml"
CONTAINERFILE = DEPLOY / "Containerfile"
# The oldest Kubernetes release still maintained upstream when this was written; native gRPC probes are GA
# since 1.27. kubernetes-validate ships this version's schemas, so nothing is fetched at test time.
K8S_VERSION = "1.31.0"
KEY_DIR = "/etc/custos/keys"  # `custos init --key-dir` in deploy/README.md; config.json names it
MONITORING = "monitoring"  # the namespace Prometheus and the OpenTelemetry collector run in
EGRESS_PORTS = {5432: "PostgreSQL", 53: "DNS", 4317: "OTLP"}
# Not committed, so not scanned: `custos init`'s output an operator puts there for compose (git-ignored).
LOCAL_ONLY = {DEPLOY / "compose" / "data", DEPLOY / "compose" / "secrets", DEPLOY / "compose" / "gateway-tls"}

Docs = list[dict[str, Any]]


# ---- what `custos init` writes: the names the mounts must use ------------------------------------------

@pytest.fixture(scope="module")
def init_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """The files of a production-style init (offline CA, --tls, --key-dir): data dir and key dir, relative."""
    root = tmp_path_factory.mktemp("init")
    assert cli.main(["ca", "init", str(root / "ca")]) == 0
    assert cli.main(["ca", "issue", str(root / "ca"), "--server", "--out", str(root / "gateway-tls")]) == 0
    assert cli.main(["init", str(root / "data"), "--key-dir", str(root / "keys"), "--tls",
                     str(root / "gateway-tls")]) == 0

    def rel(d: Path) -> set[str]:
        return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}

    return {"data": rel(root / "data"), "keys": rel(root / "keys")}


# ---- Kubernetes --------------------------------------------------------------------------------------

def load_k8s(directory: Path = K8S) -> Docs:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: Docs = [kustomization]
    for name in kustomization.get("resources", []):
        docs += [d for d in yaml.safe_load_all((directory / name).read_text()) if d]
    return docs


def of_kind(docs: Docs, kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def schema_errors(docs: Docs) -> list[str]:
    errors = []
    for doc in docs:
        if doc.get("kind") == "Kustomization":
            continue  # not a cluster resource: kustomize reads it (checked below)
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {exc.message}")
    return errors


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def port_of(address: str | None) -> int | None:
    return int(address.rsplit(":", 1)[1]) if address else None


def k8s_problems(docs: Docs, files: dict[str, set[str]], directory: Path = K8S) -> list[str]:
    """What matters to us and no schema knows."""
    p: list[str] = []
    kustomization = docs[0]
    listed = set(kustomization.get("resources", []))
    present = {f.name for f in directory.glob("*.yaml")} - {"kustomization.yaml"}
    if listed != present:
        p.append(f"kustomization resources {sorted(listed)} are not the manifests here {sorted(present)}")
    deployments = of_kind(docs, "Deployment")
    if len(deployments) != 1:
        return [*p, "expected one Deployment"]
    dep = deployments[0]
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"].get("labels", {})
    (container,) = pod["containers"]
    args = [*container.get("command", []), *container.get("args", [])]
    if "serve" not in args:
        return [*p, "the container does not run `custos serve`"]
    data_dir = args[args.index("serve") + 1]
    health, metrics, listen = (port_of(flag(args, f)) for f in ("--health", "--metrics", "--listen"))
    if health is None:
        p.append("serve has no --health port: Kubernetes' gRPC probe cannot present a client certificate")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec = container.get(probe)
        if spec is None:
            p.append(f"no {probe}")
        elif spec.get("grpc", {}).get("port") != health:
            p.append(f"{probe} does not ask grpc.health.v1 on the --health port {health}: {spec}")
    declared = {port["containerPort"] for port in container.get("ports", [])}
    if not {listen, health, metrics} <= declared:
        p.append(f"container ports {sorted(declared)} lack one of --listen/--health/--metrics")
    if (dep["spec"].get("replicas") or 1) < 2:
        p.append("fewer than two replicas")
    # Security.
    psc, csc = pod.get("securityContext", {}), container.get("securityContext", {})
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        p.append("runAsNonRoot is not set")
    if csc.get("readOnlyRootFilesystem") is not True:
        p.append("the root filesystem is writable")
    if csc.get("allowPrivilegeEscalation") is not False:
        p.append("privilege escalation is allowed")
    if csc.get("capabilities", {}).get("drop") != ["ALL"]:
        p.append("capabilities are not all dropped")
    for kind in ("requests", "limits"):
        if set(container.get("resources", {}).get(kind, {})) != {"cpu", "memory"}:
            p.append(f"resources.{kind} must set cpu and memory")
    accounts = {a["metadata"]["name"]: a for a in of_kind(docs, "ServiceAccount")}
    account = accounts.get(pod.get("serviceAccountName", ""))
    if account is None or account.get("automountServiceAccountToken") is not False \
            or pod.get("automountServiceAccountToken") is not False:
        p.append("the pod's ServiceAccount token is mounted (automountServiceAccountToken must be false)")
    # What the pods mount: init's files, where serve looks for them.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = container.get("volumeMounts", [])
    for v in volumes.values():
        if "secret" in v and v["secret"].get("defaultMode") != 0o400:
            p.append(f"secret volume {v['name']} is not defaultMode 0400")
    for m in mounts:
        v = volumes.get(m["name"])
        if v is None:
            p.append(f"mount of unknown volume {m['name']}")
            continue
        source = v.get("secret") or v.get("configMap")
        if source is None:
            continue
        items = [i["path"] for i in source.get("items", [])]
        target = m["mountPath"]
        if target == KEY_DIR:
            if items and not set(items) <= files["keys"]:
                p.append(f"key items {items} are not files of `custos init --key-dir`: {sorted(files['keys'])}")
            if "items" in source:
                p.append("the key Secret lists items: a KEK added by `keys rotate` would never reach the pods")
            continue
        if m.get("subPath"):
            rel = os.path.relpath(target, data_dir)
            if rel.startswith("..") or m["subPath"] not in items or rel not in files["data"]:
                p.append(f"{target} (subPath {m['subPath']}) is not a data directory file init writes")
            continue
        rel = os.path.relpath(target, data_dir)
        if rel.startswith(".."):
            p.append(f"{m['name']} mounted at {target}, outside the data directory {data_dir} and the key directory")
        elif not items or not {f"{rel}/{i}" for i in items} <= files["data"]:
            p.append(f"{m['name']} items {items} at {target} are not files init writes in the data directory")
    if not any(m["mountPath"] == KEY_DIR and "secret" in volumes.get(m["name"], {}) for m in mounts):
        p.append(f"no Secret mounted at the key directory {KEY_DIR}")
    if not any(m["mountPath"] == data_dir and "emptyDir" in volumes.get(m["name"], {}) for m in mounts):
        p.append(f"the data directory {data_dir} is not a writable emptyDir (serve.lock)")
    # Selectors.
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        objs = of_kind(docs, kind)
        if not objs:
            p.append(f"no {kind}")
        for obj in objs:
            sel = obj["spec"].get("selector") or obj["spec"].get("podSelector") or {}
            sel = sel.get("matchLabels", sel)
            if not sel or any(labels.get(k) != v for k, v in sel.items()):
                p.append(f"{kind} {obj['metadata']['name']} does not select the gateway's pods")
    for svc in of_kind(docs, "Service"):
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort")
            named = {q.get("name"): q["containerPort"] for q in container.get("ports", [])}
            if named.get(target, target) != listen:
                p.append(f"Service port {port} does not lead to the gRPC port {listen}")
    p += netpol_problems(of_kind(docs, "NetworkPolicy"), listen, health, metrics)
    return p


def netpol_problems(policies: list[dict[str, Any]], grpc_port: int | None, health: int | None,
                    metrics: int | None) -> list[str]:
    p: list[str] = []
    for pol in policies:
        spec = pol["spec"]
        if set(spec.get("policyTypes", [])) != {"Ingress", "Egress"}:
            p.append("the NetworkPolicy must govern both Ingress and Egress")
        for rule in spec.get("ingress", []):
            ports = {q.get("port") for q in rule.get("ports", [])}
            sources = rule.get("from", [])
            if not ports or not sources:
                p.append(f"ingress rule open to every port or every source: {rule}")
            elif ports == {grpc_port}:
                if any("namespaceSelector" in s or "ipBlock" in s for s in sources):
                    p.append("the gRPC port is open beyond the front proxy's pods")
            elif ports <= {health, metrics}:
                if any(s.get("namespaceSelector", {}).get("matchLabels") !=
                       {"kubernetes.io/metadata.name": MONITORING} for s in sources):
                    p.append("health/metrics are open beyond the monitoring namespace")
            else:
                p.append(f"ingress to ports {sorted(ports, key=str)}: only gRPC, health and metrics")
        seen: set[int] = set()
        for rule in spec.get("egress", []):
            ports = {q.get("port") for q in rule.get("ports", [])}
            if not rule.get("to") or not ports or not ports <= set(EGRESS_PORTS):
                p.append(f"egress beyond PostgreSQL, DNS and the collector: {rule}")
            seen |= ports & set(EGRESS_PORTS)
        if seen != set(EGRESS_PORTS):
            p.append(f"egress lacks {sorted(set(EGRESS_PORTS) - seen)}: the gateway needs them")
    return p


def test_kubernetes_manifests_pass_the_schemas() -> None:
    docs = load_k8s()
    assert {d["kind"] for d in docs} >= {"Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service",
                                         "PodDisruptionBudget", "NetworkPolicy"}
    assert schema_errors(docs) == []


def test_kubernetes_manifests_do_what_we_need(init_files: dict[str, set[str]]) -> None:
    assert k8s_problems(load_k8s(), init_files) == []


def _dep(docs: Docs) -> dict[str, Any]:
    return of_kind(docs, "Deployment")[0]


def _container(docs: Docs) -> dict[str, Any]:
    return dict(_dep(docs)["spec"]["template"]["spec"]["containers"][0])


def _volume(docs: Docs, name: str) -> dict[str, Any]:
    return next(v for v in _dep(docs)["spec"]["template"]["spec"]["volumes"] if v["name"] == name)


def _netpol(docs: Docs) -> dict[str, Any]:
    return of_kind(docs, "NetworkPolicy")[0]


SCHEMA_BREAKS: dict[str, Callable[[Docs], None]] = {
    "replicas as a string": lambda d: _dep(d)["spec"].update(replicas="three"),
    "probe port as a list": lambda d: _dep(d)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    ["grpc"].update(port=[7444]),
    "unknown field in the pod": lambda d: _dep(d)["spec"]["template"]["spec"].update(hostNetwrok=True),
    "PDB maxUnavailable as a map": lambda d: of_kind(d, "PodDisruptionBudget")[0]["spec"].update(
        maxUnavailable={"one": 1}),
}


@pytest.mark.parametrize("name", sorted(SCHEMA_BREAKS))
def test_a_schema_break_is_caught(name: str) -> None:
    docs = copy.deepcopy(load_k8s())
    SCHEMA_BREAKS[name](docs)
    assert schema_errors(docs), f"the schema let through: {name}"


def _containers(d: Docs) -> list[dict[str, Any]]:
    return list(_dep(d)["spec"]["template"]["spec"]["containers"])


def _drop(obj: dict[str, Any], key: str) -> None:
    del obj[key]


OUR_BREAKS: dict[str, Callable[[Docs], None]] = {
    "readiness probe dropped": lambda d: _drop(_containers(d)[0], "readinessProbe"),
    "liveness probe on the mTLS port": lambda d: _containers(d)[0]["livenessProbe"]["grpc"].update(port=7443),
    "--health moved, probes not": lambda d: _containers(d)[0].update(
        args=[a.replace(":7444", ":8081") for a in _containers(d)[0]["args"]]),
    "writable root filesystem": lambda d: _containers(d)[0]["securityContext"].update(readOnlyRootFilesystem=False),
    "capabilities kept": lambda d: _containers(d)[0]["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
    "no memory limit": lambda d: _drop(_containers(d)[0]["resources"]["limits"], "memory"),
    "token mounted": lambda d: of_kind(d, "ServiceAccount")[0].update(automountServiceAccountToken=True),
    "secret readable by all": lambda d: _volume(d, "keys")["secret"].update(defaultMode=0o444),
    "TLS item misnamed": lambda d: _volume(d, "tls")["secret"]["items"][1].update(key="tls.crt", path="tls.crt"),
    "config item misnamed": lambda d: _volume(d, "datadir")["configMap"]["items"][0].update(path="custos.json"),
    "key Secret pinned to items": lambda d: _volume(d, "keys")["secret"].update(
        items=[{"key": "kek-1.key", "path": "kek-1.key"}]),
    "keys mounted elsewhere": lambda d: next(m for m in _containers(d)[0]["volumeMounts"] if m["name"] == "keys")
    .update(mountPath="/keys"),
    "PDB selects nothing": lambda d: of_kind(d, "PodDisruptionBudget")[0]["spec"]["selector"].update(
        matchLabels={"app": "other"}),
    "egress to anywhere": lambda d: _netpol(d)["spec"]["egress"].append({"ports": [{"port": 443}]}),
    "metrics open to every namespace": lambda d: _netpol(d)["spec"]["ingress"][1]["from"][0].update(
        namespaceSelector={}),
    "gRPC from any address": lambda d: _netpol(d)["spec"]["ingress"][0]["from"].append(
        {"ipBlock": {"cidr": "0.0.0.0/0"}}),
    "no egress policy": lambda d: _netpol(d)["spec"].update(policyTypes=["Ingress"]),
    "a manifest left out of kustomization": lambda d: d[0]["resources"].remove("networkpolicy.yaml"),
}


@pytest.mark.parametrize("name", sorted(OUR_BREAKS))
def test_our_checks_catch_a_broken_manifest(name: str, init_files: dict[str, set[str]]) -> None:
    docs = copy.deepcopy(load_k8s())
    OUR_BREAKS[name](docs)
    assert k8s_problems(docs, init_files), f"not caught: {name}"


# ---- compose -----------------------------------------------------------------------------------------

def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, timeout=120)


def compose_problems(doc: dict[str, Any], files: dict[str, set[str]], haproxy_cfg: str, otel: dict[str, Any]) -> list[str]:
    p: list[str] = []
    services = doc["services"]
    gateways = {n: s for n, s in services.items() if "serve" in s.get("command", [])}
    if len(gateways) < 2:
        p.append("fewer than two gateway replicas")
    servers = re.findall(r"^\s*server\s+\S+\s+(\S+):(\d+)", haproxy_cfg, re.M)
    check_port = re.search(r"check port (\d+)", haproxy_cfg)
    scraped = {t for job in otel["receivers"]["prometheus"]["config"]["scrape_configs"]
               for sc in job["static_configs"] for t in sc["targets"]}
    for name, svc in gateways.items():
        args = svc["command"]
        data_dir = args[args.index("serve") + 1]
        health, metrics, listen = (port_of(flag(args, f)) for f in ("--health", "--metrics", "--listen"))
        probe = svc.get("healthcheck", {}).get("test", [])
        if health is None or not any(str(t).endswith(f":{health}") for t in probe):
            p.append(f"{name}: healthcheck {probe} does not ask the --health port {health}")
        if (name, str(listen)) not in servers:
            p.append(f"{name}: not a server of the proxy on its --listen port {listen}")
        if check_port is None or int(check_port.group(1)) != health:
            p.append(f"{name}: the proxy does not check the --health port {health}")
        if f"{name}:{metrics}" not in scraped:
            p.append(f"{name}: the collector does not scrape {name}:{metrics}")
        endpoint = svc.get("environment", {}).get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        if not endpoint.endswith(":4317") or endpoint.split("//")[-1].split(":")[0] not in services:
            p.append(f"{name}: OTLP endpoint {endpoint!r} is not the collector")
        if not svc.get("read_only") or svc.get("cap_drop") != ["ALL"] or svc.get("user", "0").split(":")[0] in ("0", "root"):
            p.append(f"{name}: must run read-only, with no capability, as a non-root user")
        for entry in svc.get("configs", []):
            rel = os.path.relpath(entry["target"], data_dir)
            if rel not in files["data"]:
                p.append(f"{name}: config at {entry['target']} is not a file init writes in the data directory")
        keys = [s["target"] for s in svc.get("secrets", []) if s["target"].startswith(KEY_DIR + "/")]
        if not {os.path.basename(k) for k in keys} >= files["keys"] - {"db.key"}:
            p.append(f"{name}: secrets {keys} lack key files init writes: {sorted(files['keys'] - {'db.key'})}")
        if not {os.path.basename(k) for k in keys} <= files["keys"]:
            p.append(f"{name}: secrets {keys} name files init never writes")
    for name, svc in services.items():
        for var in svc.get("environment", {}):
            if re.search(r"PASSWORD$|SECRET$|TOKEN$", var):
                p.append(f"{name}: {var} given in the file: use a secret (*_FILE)")
    for name, secret in doc.get("secrets", {}).items():
        if set(secret) != {"file"}:
            p.append(f"secret {name} is not read from a file")
    return p


def load_compose() -> tuple[dict[str, Any], str, dict[str, Any]]:
    return (yaml.safe_load(COMPOSE.read_text()), (DEPLOY / "compose" / "haproxy.cfg").read_text(),
            yaml.safe_load((DEPLOY / "compose" / "otel-collector.yaml").read_text()))


def test_compose_passes_the_compose_spec_schema() -> None:
    done = check_compose_schema(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_does_what_we_need(init_files: dict[str, set[str]]) -> None:
    doc, cfg, otel = load_compose()
    assert compose_problems(doc, init_files, cfg, otel) == []


def test_a_compose_schema_break_is_caught(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    restart: unless-stopped\n", "    restart: [sometimes]\n", 1))
    assert check_compose_schema(broken).returncode != 0
    broken.write_text(COMPOSE.read_text().replace("  proxy:\n", "  proxy:\n    replicas_please: 3\n", 1))
    assert check_compose_schema(broken).returncode != 0


def _gw(doc: dict[str, Any]) -> dict[str, Any]:
    gateway: dict[str, Any] = doc["services"]["gateway-2"]
    return gateway


COMPOSE_BREAKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "healthcheck on another port": lambda d: d["services"]["gateway-2"].update(
        healthcheck={"test": ["CMD", "python3", "/opt/custos/probe.py", "127.0.0.1:7443"]}),
    "a replica the proxy does not know": lambda d: d["services"].update(
        {"gateway-4": copy.deepcopy(d["services"]["gateway-1"])}),
    "key secret misnamed": lambda d: _gw(d)["secrets"][0].update(target=f"{KEY_DIR}/kek1.key"),
    "config outside the data directory": lambda d: _gw(d)["configs"][0].update(target="/etc/custos/config.json"),
    "password in the file": lambda d: d["services"]["postgres"]["environment"].update(POSTGRES_PASSWORD="x"),
    "runs as root": lambda d: _gw(d).update(user="0:0"),
    "root filesystem writable": lambda d: _gw(d).update(read_only=False),
    "traces go nowhere": lambda d: d["services"]["gateway-1"].update(environment={"CUSTOS_LOG_LEVEL": "INFO"}),
}


@pytest.mark.parametrize("name", sorted(COMPOSE_BREAKS))
def test_our_compose_checks_catch_a_broken_file(name: str, init_files: dict[str, set[str]]) -> None:
    doc, cfg, otel = load_compose()
    doc = copy.deepcopy(doc)
    COMPOSE_BREAKS[name](doc)
    assert compose_problems(doc, init_files, cfg, otel), f"not caught: {name}"


# ---- the compose proxy -----------------------------------------------------------------------------

def frontend_rules(text: str) -> list[str]:
    """The frontend's directives, comments and blank lines left out: the limits that must not drift."""
    block = text.split("\nfrontend custos\n", 1)[1].split("\nbackend ", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def haproxy_check(cfg: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUSTOS_PROXY_MAXCONN": "100"}  # fits any machine's descriptor limit
    return subprocess.run([haproxy_binary(), "-c", "-f", str(cfg)], capture_output=True, text=True, env=env,
                          timeout=60)


def test_compose_proxy_config_is_valid_and_keeps_the_shipped_limits(tmp_path: Path) -> None:
    cfg = DEPLOY / "compose" / "haproxy.cfg"
    done = haproxy_check(cfg)
    assert done.returncode == 0, done.stdout + done.stderr
    assert frontend_rules(cfg.read_text()) == frontend_rules((DEPLOY / "haproxy.cfg").read_text())
    broken = tmp_path / "haproxy.cfg"
    broken.write_text(cfg.read_text().replace("balance leastconn", "balance fewestconn"))
    assert haproxy_check(broken).returncode != 0
    assert frontend_rules(cfg.read_text().replace("sc0_conn_cur gt 32", "sc0_conn_cur gt 3200")) != \
        frontend_rules((DEPLOY / "haproxy.cfg").read_text())


# ---- the Containerfile -------------------------------------------------------------------------------

def containerfile_problems(text: str) -> list[str]:
    lines = [ln.strip() for ln in text.replace("\\\n", " ").splitlines() if ln.strip() and not ln.startswith("#")]
    p: list[str] = []
    runs = [ln for ln in lines if ln.startswith("RUN ")]
    lock_installs = [r for r in runs if re.search(r"-r \S*requirements-image\.lock", r)]
    if not lock_installs or not all("--require-hashes" in r and "--no-deps" in r for r in lock_installs):
        p.append("the lock is not installed with --require-hashes --no-deps")
    local = [r for r in runs if "./clients/python" in r]
    if not local or not all("--no-deps" in r and "--no-build-isolation" in r for r in local):
        p.append("the local packages are not installed with --no-deps --no-build-isolation (nothing resolved)")
    if not any(r for r in runs if "pip check" in r):
        p.append("no pip check")
    if not any(re.match(r"ARG BASE=\S*python:3\.11-slim-bookworm$", ln) for ln in lines):
        p.append("ARG BASE does not default to python:3.11-slim-bookworm")
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        p.append("the image runs as root")
    if any(re.search(r"\.key\b|keys/|\.pem\b", ln) for ln in lines if ln.startswith(("COPY", "ADD"))):
        p.append("a key is copied into the image")
    cmd = next((json.loads(ln[4:]) for ln in lines if ln.startswith("CMD ")), [])
    health, metrics, listen = (port_of(flag(cmd, f)) for f in ("--health", "--metrics", "--listen"))
    exposed = {int(x) for ln in lines if ln.startswith("EXPOSE ") for x in ln.split()[1:]}
    if None in (health, metrics, listen) or not {health, metrics, listen} <= exposed:
        p.append(f"EXPOSE {sorted(exposed)} does not cover --listen/--health/--metrics of CMD {cmd}")
    check = next((ln for ln in lines if ln.startswith("HEALTHCHECK ")), "")
    if f":{health}" not in check:
        p.append("the HEALTHCHECK does not ask the --health port")
    return p


def lock_entries(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, hashes) of a `make lock` file."""
    entries = {}
    for block in re.split(r"\n(?=[a-z0-9])", path.read_text()):
        head = re.match(r"([a-z0-9_.-]+)==(\S+)", block)
        if head:
            entries[head.group(1)] = (head.group(2), frozenset(re.findall(r"--hash=(sha256:[0-9a-f]{64})", block)))
    return entries


def image_lock_problems(image: Path, full: Path) -> list[str]:
    """The image's lock: requirements.lock's own pins and hashes, every runtime dependency and the build backend."""
    import tomllib

    sub, whole = lock_entries(image), lock_entries(full)
    p = [f"{name} {pin[0]} differs from requirements.lock's" for name, pin in sub.items() if whole.get(name) != pin]
    wanted = {"setuptools"}
    for pyproject in (ROOT / "pyproject.toml", ROOT / "clients" / "python" / "pyproject.toml"):
        for dep in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
            wanted.add(re.split(r"[\[<>=!~ ]", dep, maxsplit=1)[0].lower().replace("_", "-"))
    p += [f"{name} (a runtime dependency) is missing" for name in sorted(wanted - set(sub))]
    p += [f"{name} is a dev tool" for name in ("pytest", "mypy", "playwright", "ruff", "grpcio-tools") if name in sub]
    return p


def test_image_lock_is_the_runtime_part_of_the_lock(tmp_path: Path) -> None:
    image = DEPLOY / "requirements-image.lock"
    assert image_lock_problems(image, ROOT / "requirements.lock") == []
    assert len(lock_entries(image)) >= 20
    stale = tmp_path / "stale.lock"
    stale.write_text(image.read_text().replace("psycopg==", "psycopg==0.0.1+", 1))
    assert image_lock_problems(stale, ROOT / "requirements.lock")
    thin = tmp_path / "thin.lock"
    thin.write_text(re.sub(r"\nsetuptools==.*?(?=\n[a-z]|\Z)", "", image.read_text(), flags=re.S))
    assert "setuptools (a runtime dependency) is missing" in image_lock_problems(thin, ROOT / "requirements.lock")


def test_containerfile_installs_the_lock_by_hash_and_runs_unprivileged() -> None:
    assert containerfile_problems(CONTAINERFILE.read_text()) == []


@pytest.mark.parametrize("old,new", [
    ("--require-hashes ", ""),
    ("--no-deps --no-build-isolation ./clients/python", "./clients/python"),
    ("USER 10001:10001", "USER root"),
    ('"--health", "0.0.0.0:7444"', '"--health", "0.0.0.0:8081"'),
    ("python:3.11-slim-bookworm", "python:3.12-slim"),
    ("COPY deploy/probe.py", "COPY deploy/compose/secrets/keys/kek-1.key /etc/custos/keys/\nCOPY deploy/probe.py"),
])
def test_containerfile_checks_catch_a_break(old: str, new: str) -> None:
    text = CONTAINERFILE.read_text()
    assert old in text
    assert containerfile_problems(text.replace(old, new, 1))


# ---- no key material in deploy/ ----------------------------------------------------------------------

KEY_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----"),
    re.compile(r"(?<!sha256:)\b[0-9a-fA-F]{64,}\b"),  # a key file of `custos init` is 64 hex digits (not a lock's hash)
    re.compile(r"(?<![A-Za-z0-9+/:])[A-Za-z0-9+/]{40,}={0,2}(?![A-Za-z0-9+/])"),  # base64 of 30+ bytes
]


def key_material(root: Path, skip: set[Path]) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(s == path or s in path.parents for s in skip):
            continue
        if path.suffix in (".key", ".pem", ".crt", ".p12"):
            found.append(f"{path}: a key or certificate file")
            continue
        text = path.read_text(errors="replace")
        found += [f"{path}: {pat.pattern}" for pat in KEY_PATTERNS if pat.search(text)]
    return found


def test_no_key_material_in_deploy(tmp_path: Path) -> None:
    assert key_material(DEPLOY, LOCAL_ONLY) == []
    # The scan finds what `custos init` and `custos ca` write, pasted into a copy.
    assert cli.main(["ca", "init", str(tmp_path / "ca")]) == 0
    assert cli.main(["init", str(tmp_path / "data"), "--key-dir", str(tmp_path / "keys")]) == 0
    for pasted in [(tmp_path / "keys" / "kek-1.key").read_text(), (tmp_path / "ca" / "ca.key").read_text(),
                   (tmp_path / "data" / "tls" / "server.crt").read_text()]:
        copy_dir = tmp_path / "deploy-copy"
        shutil.rmtree(copy_dir, ignore_errors=True)
        shutil.copytree(DEPLOY, copy_dir, ignore=shutil.ignore_patterns("data", "secrets", "gateway-tls"))
        (copy_dir / "kubernetes" / "secret.yaml").write_text(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: custos-keys}\nstringData:\n  kek-1.key: |\n"
            + "".join(f"    {line}\n" for line in pasted.splitlines()))
        assert key_material(copy_dir, set()), pasted[:10]


# ---- the pod's layout serves -------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe(port: int, service: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(DEPLOY / "probe.py"), f"127.0.0.1:{port}", service],
                          capture_output=True, text=True, timeout=30)


def test_probe_fails_without_a_server() -> None:
    done = probe(_free_port())
    assert done.returncode == 1
    assert "UNAVAILABLE" in done.stderr


def test_the_pods_layout_serves_on_postgresql(tmp_path: Path, pg_server: PgServer, served: list[Served]) -> None:
    """A data directory made only of what the Deployment mounts, the keys read-only: SERVING on --health.

    The keys are made at the path the pod mounts them (`custos init --key-dir`, as deploy/README.md says),
    here under tmp_path; the data directory is emptyDir + the ConfigMap's and the TLS Secret's items.
    """
    docs = load_k8s()
    container = _container(docs)
    pod = _dep(docs)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    args = container["args"]
    data_dir = args[args.index("serve") + 1]
    url = pg_server.create_database("custos_deploy")
    made, keys = tmp_path / "init", tmp_path / KEY_DIR.lstrip("/")
    assert cli.main(["ca", "init", str(tmp_path / "ca")]) == 0
    assert cli.main(["ca", "issue", str(tmp_path / "ca"), "--server", "--out", str(tmp_path / "gateway-tls")]) == 0
    assert cli.main(["init", str(made), "--key-dir", str(keys), "--tls", str(tmp_path / "gateway-tls"),
                     "--database", url]) == 0
    # The pod's data directory: an empty directory, then each mount of a ConfigMap or Secret item.
    pod_data = tmp_path / data_dir.lstrip("/")
    pod_data.mkdir(parents=True)
    for m in container["volumeMounts"]:
        source = volumes[m["name"]].get("configMap") or volumes[m["name"]].get("secret")
        if source is None or m["mountPath"] == KEY_DIR:
            continue
        rel = os.path.relpath(m["mountPath"], data_dir)
        if m.get("subPath"):
            shutil.copy(made / rel, pod_data / rel)
        else:
            (pod_data / rel).mkdir()
            for item in source["items"]:
                shutil.copy(made / rel / item["key"], pod_data / rel / item["path"])
    # The key Secret: read-only files (defaultMode 0400) in a read-only directory.
    mode = volumes["keys"]["secret"]["defaultMode"]
    for f in keys.iterdir():
        f.chmod(mode)
    keys.chmod(0o500)
    assert sorted(p.name for p in pod_data.rglob("*")) == ["audit.vkey", "ca.crt", "config.json", "packet.vkey",
                                                           "server.crt", "tls"]
    health, metrics = _free_port(), _free_port()
    extra = []
    rest = args[args.index("serve") + 2:]
    i = 0
    while i < len(rest):
        if rest[i] == "--listen":
            i += 2
            continue
        if rest[i] in ("--health", "--metrics"):
            extra += [rest[i], f"127.0.0.1:{health if rest[i] == '--health' else metrics}"]
            i += 2
            continue
        extra.append(rest[i])
        i += 1
    try:
        served.append(Served(pod_data, extra=extra))
        deadline = time.monotonic() + 30
        while (done := probe(health)).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert done.returncode == 0, done.stdout + done.stderr + served[0].log.read_text()[-2000:]
        assert "SERVING" in done.stdout
        assert probe(health, "custos.v1.CaseService").returncode == 0
        assert not (pod_data / "keys").exists()  # no key written into the data directory
    finally:
        keys.chmod(0o700)
        pg_server.sql('DROP DATABASE IF EXISTS "custos_deploy" WITH (FORCE)')
