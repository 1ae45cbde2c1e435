"""Manifest analysis for `make deploy-check`: what the kubelet would run, read from rendered overlays.

`analyse()` needs no containers, so a broken manifest is caught in a fast test (tests/k8s): every
problem names the workload and container it belongs to. The container runner (deploy/check.py)
starts exactly what `analyse()` resolved.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

REPO = Path(__file__).resolve().parents[1]

# The image's own environment (Dockerfile, runtime stage): the kubelet's env is laid over it.
IMAGE_ENV = {
    "PATH": "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONPATH": "/app",
    "HOME": "/tmp",
    "KOTOBA_DATA_DIR": "/var/lib/kotoba",
    "KOTOBA_ENV": "prod",
}
IMAGE_UID = 10001

# What the operator is told to create (docs/operations.md, "Secrets"), with test values. A manifest that
# refers to any other key of these Secrets is broken: the pod would never start.
TEST_SECRETS: dict[str, dict[str, str]] = {
    "kotoba-secrets": {
        "KOTOBA_JWT_SECRET": "deploy-check-jwt-secret-0123456789abcdef",
        "GEMINI_API_KEY": "local-dev-key",
        "KOTOBA_PSEUDONYM_KEY": "deploy-check-pseudonym-key-0123456789abcdef",
        "KOTOBA_TOOLS_PAGE_SECRET": "deploy-check-page-secret-0123456789abcdef",
        # A "service"-role token from the identity provider; deploy-check signs one with its own key.
        "KOTOBA_GATEWAY_SERVICE_TOKEN": "placeholder",
    },
}

# Which variable each service listens on (services/common/config.py DEFAULT_ADDRS + local_live).
LISTEN_VAR = {
    "services.gateway": "KOTOBA_GATEWAY_ADDR",
    "services.retrieval": "KOTOBA_RETRIEVAL_ADDR",
    "services.tools": "KOTOBA_TOOLS_ADDR",
    "services.conversations": "KOTOBA_CONVERSATIONS_ADDR",
    "services.local_live": "KOTOBA_LIVE_ADDR",
}
# Variables that name a file or directory the process writes or reads at run time.
PATH_VARS = {"KOTOBA_DATA_DIR": "rw", "KOTOBA_LIVE_CA_FILE": "rw-parent", "KOTOBA_GATEWAY_SERVICE_TOKEN_FILE": "ro"}
# Not enforced by the service's config parser but needed in prod (a turn log whose learner token expired
# in the queue is otherwise lost).
REQUIRED_IN_PROD = {"services.gateway": ("KOTOBA_GATEWAY_SERVICE_TOKEN_FILE",)}

DOWNWARD = {"metadata.namespace": "kotoba", "status.podIP": "127.0.0.1", "spec.nodeName": "deploy-check",
            "status.hostIP": "127.0.0.1"}


@dataclass
class Container:
    workload: str  # "Deployment/gateway"
    name: str
    role: str  # main | init | sidecar
    image: str
    argv: list[str]
    env: dict[str, str]
    ports: dict[str, int]
    probes: dict[str, dict]
    mounts: list[tuple[str, str, bool]]  # (path, volume, read-only)
    uid: int
    gid: int
    read_only_root: bool
    pre_stop: list[str] | None = None

    @property
    def module(self) -> str:
        argv = self.argv
        if not _is_kotoba(self.image):
            return ""
        if len(argv) >= 3 and argv[1] == "-m":
            return argv[2]
        return argv[0] if argv else ""

    @property
    def listen(self) -> str:
        var = LISTEN_VAR.get(self.module)
        return self.env.get(var, "") if var else ""

    def label(self) -> str:
        return f"{self.workload} container {self.name}"


@dataclass
class Workload:
    kind: str
    name: str
    containers: list[Container]  # init and sidecars first, in order
    volumes: dict[str, dict]
    replicas: int = 1
    suspended: bool = False
    grace_s: int = 30

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass
class Analysis:
    overlay: str
    workloads: list[Workload] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    docs: list[dict] = field(default_factory=list)

    def workload(self, name: str) -> Workload:
        return next(w for w in self.workloads if w.name == name)


def kubectl() -> str:
    venv = Path(sys.executable).parent / "kubectl"
    return str(venv) if venv.exists() else (shutil.which("kubectl") or "kubectl")


def render(overlay: Path) -> list[dict]:
    result = subprocess.run([kubectl(), "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"kubectl kustomize {overlay} failed:\n{result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _pod_templates(docs: list[dict]):
    for d in docs:
        kind, name, spec = d["kind"], d["metadata"]["name"], d.get("spec", {})
        if kind == "Deployment":
            yield kind, name, spec["template"]["spec"], spec.get("replicas", 2), False
        elif kind == "Job":
            yield kind, name, spec["template"]["spec"], 1, False
        elif kind == "CronJob":
            yield kind, name, spec["jobTemplate"]["spec"]["template"]["spec"], 1, bool(spec.get("suspend"))


def _resolve_env(workload: str, cname: str, c: dict, configmaps: dict[str, dict], secrets: dict[str, dict],
                 problems: list[str], ours: bool = True) -> dict[str, str]:
    env = dict(IMAGE_ENV) if ours else {}
    where = f"{workload} container {cname}"
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            ref = src["configMapRef"]
            data = configmaps.get(ref["name"])
            if data is None and not ref.get("optional"):
                problems.append(f"{where}: envFrom ConfigMap {ref['name']!r} is not in the overlay")
            env.update({src.get("prefix", "") + k: v for k, v in (data or {}).items()})
        elif "secretRef" in src:
            ref = src["secretRef"]
            data = secrets.get(ref["name"])
            if data is None and not ref.get("optional"):
                problems.append(f"{where}: envFrom Secret {ref['name']!r} is not one the operator creates")
            env.update({src.get("prefix", "") + k: v for k, v in (data or {}).items()})
    for e in c.get("env", []):
        name = e["name"]
        if "value" in e:
            env[name] = str(e["value"])
            continue
        ref = e.get("valueFrom", {})
        if "secretKeyRef" in ref or "configMapKeyRef" in ref:
            is_secret = "secretKeyRef" in ref
            r = ref["secretKeyRef" if is_secret else "configMapKeyRef"]
            store = (secrets if is_secret else configmaps).get(r["name"])
            what = "Secret" if is_secret else "ConfigMap"
            if store is None or r["key"] not in store:
                if not r.get("optional"):
                    problems.append(f"{where}: env {name} needs key {r['key']!r} of {what} {r['name']!r}, "
                                    "which does not exist: the pod would stop in CreateContainerConfigError")
                continue
            env[name] = store[r["key"]]
        elif "fieldRef" in ref:
            path = ref["fieldRef"]["fieldPath"]
            env[name] = DOWNWARD.get(path, f"{workload.split('/')[1]}-deploy-check")
        elif "resourceFieldRef" in ref:
            env[name] = "1"
    return env


def _is_kotoba(image: str) -> bool:
    return image.rsplit("/", 1)[-1].split(":")[0] == "kotoba"


def _container(workload: str, role: str, c: dict, pod: dict, configmaps, secrets, problems) -> Container:
    sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    argv = list(c.get("command", [])) + list(c.get("args", []))
    ours = _is_kotoba(c["image"])
    if not argv and ours:
        argv = ["python", "-m", "services.gateway"]  # the image's CMD
    ports = {p.get("name", str(p["containerPort"])): p["containerPort"] for p in c.get("ports", [])}
    probes = {k: c[k] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in c}
    mounts = [(m["mountPath"], m["name"], bool(m.get("readOnly"))) for m in c.get("volumeMounts", [])]
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    return Container(workload=workload, name=c["name"], role=role, image=c["image"], argv=argv,
                     env=_resolve_env(workload, c["name"], c, configmaps, secrets, problems, ours), ports=ports,
                     probes=probes, mounts=mounts, uid=int(sc.get("runAsUser", IMAGE_UID)),
                     gid=int(sc.get("runAsGroup", sc.get("runAsUser", IMAGE_UID))),
                     read_only_root=bool(sc.get("readOnlyRootFilesystem")), pre_stop=pre_stop)


def _probe_port(c: Container, probe: dict) -> tuple[str, int | None]:
    for kind in ("grpc", "httpGet", "tcpSocket"):
        if kind in probe:
            port = probe[kind]["port"]
            if isinstance(port, str) and not port.isdigit():
                return kind, c.ports.get(port)
            return kind, int(port)
    return "exec", None


def _under(path: str, mounts: list[tuple[str, str, bool]], writable: bool) -> bool:
    p = PurePosixPath(path)
    return any((p == PurePosixPath(m) or PurePosixPath(m) in p.parents) and (not writable or not ro)
               for m, _, ro in mounts)


def _check_config(c: Container, problems: list[str]) -> None:
    """Parse the environment with the service's own config classes, as the process will at start."""
    from services.common.config import CommonConfig, ConfigError

    def common():
        CommonConfig.from_env(c.env)

    def gateway():
        from services.gateway.config import GatewayConfig
        GatewayConfig.from_env(c.env)

    def tools():
        from services.tools.config import ToolsConfig
        ToolsConfig.from_env(c.env)

    def conversations():
        from services.conversations.config import ConversationsConfig
        ConversationsConfig.from_env(c.env)

    def retrieval():
        from services.embeddings.base import EmbedderConfig
        from services.retrieval.config import RetrievalConfig
        CommonConfig.from_env(c.env)
        RetrievalConfig.from_env(c.env)
        EmbedderConfig.from_env(c.env)

    def indexer():
        from services.snapshots.job import IndexerConfig
        CommonConfig.from_env(c.env)
        IndexerConfig.from_env(c.env)

    def live():
        from services.local_live.config import LiveConfig
        LiveConfig.from_env(c.env)

    parse = {"services.gateway": gateway, "services.tools": tools, "services.conversations": conversations,
             "services.retrieval": retrieval, "services.indexer": indexer, "services.local_live": live,
             "services.cli": common}.get(c.module)
    if parse is None:
        return
    try:
        parse()
    except ConfigError as exc:
        problems.append(f"{c.label()}: the service would exit at start: {exc}")


def analyse(overlay: Path, docs: list[dict] | None = None,
            secrets: dict[str, dict[str, str]] | None = None) -> Analysis:
    docs = render(overlay) if docs is None else docs
    secrets = TEST_SECRETS if secrets is None else secrets
    result = Analysis(overlay=overlay.name, docs=docs)
    problems = result.problems
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    in_overlay_secrets = {d["metadata"]["name"]: d.get("stringData", {}) for d in docs if d["kind"] == "Secret"}
    secrets = {**secrets, **in_overlay_secrets}
    pvcs = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    for kind, name, pod, replicas, suspended in _pod_templates(docs):
        wid = f"{kind}/{name}"
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        containers = []
        for c in pod.get("initContainers", []):
            role = "sidecar" if c.get("restartPolicy") == "Always" else "init"
            containers.append(_container(wid, role, c, pod, configmaps, secrets, problems))
        containers += [_container(wid, "main", c, pod, configmaps, secrets, problems) for c in pod["containers"]]
        w = Workload(kind, name, containers, volumes, replicas=replicas, suspended=suspended,
                     grace_s=int(pod.get("terminationGracePeriodSeconds", 30)))
        result.workloads.append(w)
        for vname, v in volumes.items():
            if "secret" in v:
                sname = v["secret"]["secretName"]
                keys = secrets.get(sname)
                if keys is None and not v["secret"].get("optional"):
                    problems.append(f"{wid}: volume {vname} needs Secret {sname!r}, which the operator "
                                    "does not create")
                for item in v["secret"].get("items", []):
                    if keys is not None and item["key"] not in keys and not v["secret"].get("optional"):
                        problems.append(f"{wid}: volume {vname} needs key {item['key']!r} of Secret {sname!r}, "
                                        "which does not exist: the pod would stay in ContainerCreating")
            if "persistentVolumeClaim" in v and v["persistentVolumeClaim"]["claimName"] not in pvcs:
                problems.append(f"{wid}: volume {vname} claims PVC {v['persistentVolumeClaim']['claimName']!r}, "
                                "which is not in the overlay")
        for c in containers:
            for path, vname, _ in c.mounts:
                if vname not in volumes:
                    problems.append(f"{c.label()}: mounts volume {vname!r} at {path}, which the pod lacks")
            if c.read_only_root and _is_kotoba(c.image):
                if not _under("/tmp", c.mounts, writable=True):
                    problems.append(f"{c.label()}: read-only root filesystem and no writable /tmp (HOME=/tmp)")
                for var, mode in PATH_VARS.items():
                    value = c.env.get(var)
                    if not value or (var == "KOTOBA_DATA_DIR" and c.module == "services.cli"
                                     and c.argv[3:5] == ["db", "create-tables"]):
                        continue
                    target = str(PurePosixPath(value).parent) if mode == "rw-parent" else value
                    if var == "KOTOBA_LIVE_CA_FILE" and c.module not in ("services.gateway", "services.local_live"):
                        continue
                    if var == "KOTOBA_GATEWAY_SERVICE_TOKEN_FILE" and c.module != "services.gateway":
                        continue
                    if not _under(target, c.mounts, writable=mode != "ro"):
                        problems.append(f"{c.label()}: {var}={value} is not on a "
                                        f"{'writable ' if mode != 'ro' else ''}mounted volume "
                                        "(read-only root filesystem)")
            for var in REQUIRED_IN_PROD.get(c.module, ()):
                if c.env.get("KOTOBA_ENV") == "prod" and not c.env.get(var):
                    problems.append(f"{c.label()}: {var} is required in prod and not set")
            _check_config(c, problems)
            host, _, lport = c.listen.rpartition(":")
            for pname, probe in c.probes.items():
                kind_, port = _probe_port(c, probe)
                if kind_ == "exec":
                    continue
                if port is None:
                    problems.append(f"{c.label()}: {pname} names port {probe[kind_]['port']!r}, "
                                    "which the container does not declare")
                    continue
                if lport and port != int(lport):
                    problems.append(f"{c.label()}: {pname} probes port {port} but the service listens on "
                                    f"{c.listen} ({LISTEN_VAR[c.module]}): the probe can never pass")
                elif lport and host in ("127.0.0.1", "localhost"):
                    problems.append(f"{c.label()}: {pname} probes port {port} on the pod IP but the service "
                                    f"listens on {c.listen} only: the probe can never pass")
            for pname, port in c.ports.items():
                if lport and port != int(lport):
                    problems.append(f"{c.label()}: containerPort {pname}={port} but the service listens on "
                                    f"{c.listen}")
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Analyse rendered overlays the way deploy-check starts them.")
    p.add_argument("overlays", nargs="*", default=["local", "prod"])
    args = p.parse_args(argv)
    failed = False
    for name in args.overlays:
        path = Path(name) if "/" in name else REPO / "k8s" / "overlays" / name
        a = analyse(path)
        for problem in a.problems:
            print(f"deploy-check [{a.overlay}] {problem}", file=sys.stderr)
        failed |= bool(a.problems)
        print(f"deploy-check [{a.overlay}] {len(a.workloads)} workloads, {len(a.problems)} problems")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
