"""The kustomize overlays render (real `kubectl kustomize`), validate strictly against Kubernetes 1.32
(`kubernetes-validate --strict`, any warning fails) and match the services' config."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.common.config import DEFAULT_ADDRS, CommonConfig, addr_var

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("local", "prod")
KUBERNETES_VERSION = "1.32.0"


def _tool(name: str) -> str:
    """The venv's copy first (pinned, from a PyPI wheel), then PATH."""
    venv = Path(sys.executable).parent / name
    if venv.exists():
        return str(venv)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: install it (see docs/operations.md, 'Validating the manifests')")
    return found


@pytest.fixture(scope="session")
def kubectl() -> str:
    return _tool("kubectl")


@pytest.fixture(scope="session")
def kubernetes_validate() -> str:
    return _tool("kubernetes-validate")


def render(kubectl: str, path: Path) -> str:
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return result.stdout


def validate(kubernetes_validate: str, manifests: str) -> subprocess.CompletedProcess:
    """kubernetes-validate --strict; --quiet leaves only WARN/ERROR lines, and any line is a failure."""
    return subprocess.run([kubernetes_validate, "-k", KUBERNETES_VERSION, "--strict", "--quiet", "-"],
                          input=manifests, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, str]:
    return {name: render(kubectl, K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def resources(rendered: dict[str, str]) -> dict[str, list[dict]]:
    return {name: [doc for doc in yaml.safe_load_all(text) if doc] for name, text in rendered.items()}

SERVICES = ("gateway", "retrieval", "tools", "conversations")
GRPC_SERVICES = ("retrieval", "tools", "conversations")
IMAGE = "kotoba"


def port_of(service: str) -> int:
    return int(DEFAULT_ADDRS[service].rpartition(":")[2])


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    """Every pod template: Deployments, Jobs and CronJobs."""
    specs = {}
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            specs[f"{d['kind']}/{d['metadata']['name']}"] = d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            specs[f"CronJob/{d['metadata']['name']}"] = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs


def all_containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def config_env(docs: list[dict]) -> dict[str, str]:
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("kotoba-config")]
    return dict(cm["data"])


def container_env(docs: list[dict], container: dict, secrets: dict[str, str]) -> dict[str, str]:
    """The environment the container starts with: envFrom the ConfigMap, then env (which wins)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"].startswith("kotoba-config")
        env.update(config_env(docs))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item["name"] in secrets:
            env[item["name"]] = secrets[item["name"]]
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_strictly(overlay, rendered, kubernetes_validate):
    result = validate(kubernetes_validate, rendered[overlay])
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        f"{overlay}:\n{result.stdout}{result.stderr}")


def _break_unknown_field(base: Path) -> None:
    path = base / "tools.yaml"
    path.write_text(path.read_text().replace("readinessProbe:", "readinesProbe:", 1))


def _break_wrong_type(base: Path) -> None:
    path = base / "tools.yaml"
    path.write_text(path.read_text().replace("containerPort: 50052", "containerPort: fifty", 1))


def _break_unknown_kind_field(base: Path) -> None:
    path = base / "hpa.yaml"
    path.write_text(path.read_text().replace("averageUtilization: 60", "averageUtilisation: 60", 1))


@pytest.mark.parametrize("breakage", [_break_unknown_field, _break_wrong_type, _break_unknown_kind_field])
def test_broken_copy_fails_validation(breakage, tmp_path, kubectl, kubernetes_validate):
    """The check bites: a typo'd field or a wrong type in a copy of the manifests must fail."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    breakage(copy / "base")
    result = validate(kubernetes_validate, render(kubectl, copy / "overlays" / "local"))
    assert result.returncode != 0 and "ERROR" in result.stdout, result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_hardened_and_bounded(overlay, resources):
    docs = resources[overlay]
    for name, spec in pod_specs(docs).items():
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] > 0, name
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        for c in all_containers(spec):
            where = f"{name} container {c['name']}"
            limits, requests = c["resources"]["limits"], c["resources"]["requests"]
            assert {"cpu", "memory"} <= limits.keys() and {"cpu", "memory"} <= requests.keys(), where
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if c["image"].rpartition(":")[0].endswith(IMAGE):
                assert "/tmp" in mounts, f"{where}: read-only root needs an emptyDir at /tmp"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_probes(overlay, resources):
    for name, deployment in by_kind(resources[overlay], "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        for c in spec["containers"]:
            assert "readinessProbe" in c and "livenessProbe" in c, f"{name}/{c['name']}"
        for c in spec.get("initContainers", []):
            if c.get("restartPolicy") == "Always":  # native sidecar
                assert "startupProbe" in c and "livenessProbe" in c, f"{name}/{c['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_ports_and_probes_match_service_config(overlay, resources):
    docs = resources[overlay]
    deployments, services = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    config = config_env(docs)
    for name in SERVICES:
        port = port_of(name)
        (c,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        repo = c["image"].rpartition(":")[0] if "@" not in c["image"] else c["image"].partition("@")[0]
        assert repo.rpartition("/")[2] == IMAGE, c["image"]
        assert c["command"] == ["python", "-m", f"services.{name}"]
        assert [p["containerPort"] for p in c["ports"]] == [port]
        own = {e["name"]: e.get("value") for e in c["env"]}
        assert own[addr_var(name)] == f"0.0.0.0:{port}", "servers listen on every interface"
        (sp,) = services[name]["spec"]["ports"]
        assert sp["port"] == port and sp["targetPort"] == c["ports"][0]["name"]
        if name in GRPC_SERVICES:
            # Clients (the gateway) dial the Service by name on the config's port.
            assert config[addr_var(name)] == f"{name}:{port}"
            assert c["readinessProbe"]["grpc"]["port"] == port and c["livenessProbe"]["grpc"]["port"] == port
            assert sp["appProtocol"] == "grpc"
        else:
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for name, spec in pod_specs(docs).items():
        for c in all_containers(spec):
            if "dynalite" not in c["image"]:
                assert c["image"].partition("@")[0].rpartition(":")[0].rpartition("/")[2] == IMAGE, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_workload_env_is_a_valid_config(overlay, resources):
    """Each container's environment (ConfigMap + env + secret placeholders) passes services/common/config.py."""
    secrets = {"KOTOBA_JWT_SECRET": "x" * 48, "GEMINI_API_KEY": "test-key", "KOTOBA_PSEUDONYM_KEY": "y" * 48}
    docs = resources[overlay]
    for name, spec in pod_specs(docs).items():
        for c in all_containers(spec):
            if c.get("envFrom"):
                config = CommonConfig.from_env(container_env(docs, c, secrets))
                assert config.environment == ("local" if overlay == "local" else "prod"), name
    prod = config_env(resources["prod"])
    assert prod["KOTOBA_EMBEDDER"] == "titan" and prod["KOTOBA_SNAPSHOT_URI"].startswith("s3://")
    assert prod["KOTOBA_LIVE_BACKEND"] == "gemini" and prod["KOTOBA_JWT_ALGORITHM"] == "RS256"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_references_only(overlay, resources, rendered):
    docs = resources[overlay]
    assert not [d for d in docs if d["kind"] == "Secret"], "secret values never live in the repo"
    for spec in pod_specs(docs).values():
        for c in all_containers(spec):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "kotoba-secrets" and ref["key"] == e["name"]
    assert "kotoba-local-dev-secret" not in rendered[overlay]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaling_draining_and_disruption(overlay, resources):
    docs = resources[overlay]
    deployments = by_kind(docs, "Deployment")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {"gateway", "retrieval"}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert "replicas" not in deployments[name]["spec"], "the HPA owns the replica count"
    gateway = by_kind(docs, "Service")["gateway"]["spec"]
    assert gateway.get("sessionAffinity", "None") == "None", "reconnects may land on any gateway pod"
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert set(pdbs) >= set(SERVICES)
    for name, pdb in pdbs.items():
        assert pdb["spec"]["selector"]["matchLabels"] == deployments[name]["spec"]["selector"]["matchLabels"]
    for name in SERVICES:
        spec = deployments[name]["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        env = container_env(docs, c, {})
        pre_stop = 5 if "lifecycle" in c else 0
        drain = float(env["KOTOBA_DRAIN_SECONDS"])
        # Drain, then the server's own stop grace (same length), must fit in the kill deadline.
        budget = pre_stop + drain + (0 if name == "gateway" else drain)
        assert spec["terminationGracePeriodSeconds"] > budget, name
    assert float(container_env(docs, deployments["gateway"]["spec"]["template"]["spec"]["containers"][0],
                               {})["KOTOBA_DRAIN_SECONDS"]) >= 60, "WebSocket sessions need time to drain"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_their_callers_reach_internal_services(overlay, resources):
    policies = by_kind(resources[overlay], "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    for name in GRPC_SERVICES:
        (policy,) = [p for p in policies.values()
                     if p["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": name}]
        (rule,) = policy["spec"]["ingress"]
        # Tools' dictionary search falls back to retrieval (services/tools/server.py); nothing else gets in.
        callers = ["gateway", "tools"] if name == "retrieval" else ["gateway"]
        assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": c}}} for c in callers]
        assert rule["ports"] == [{"port": port_of(name), "protocol": "TCP"}]


def test_prod_service_accounts_carry_irsa_roles(resources):
    accounts = by_kind(resources["prod"], "ServiceAccount")
    for name, spec in pod_specs(resources["prod"]).items():
        account = accounts[spec["serviceAccountName"]]
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::"), name


def test_indexer_runs_as_job_and_cronjobs(resources):
    for overlay in OVERLAYS:
        docs = resources[overlay]
        (job,) = by_kind(docs, "Job").values()
        assert job["spec"]["template"]["spec"]["containers"][0]["command"][-2:] == ["services.indexer", "build"]
        crons = by_kind(docs, "CronJob")
        assert set(crons) == {"indexer-update", "indexer-verify", "indexer-rollback"}
        for name, cron in crons.items():
            action = name.removeprefix("indexer-")
            cron_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            assert cron_pod["containers"][0]["command"][-2:] == ["services.indexer", action]
            assert cron["spec"]["concurrencyPolicy"] == "Forbid", "two indexers would race on LATEST"
            # verify/rollback are templates for `kubectl create job --from=cronjob/...`, never scheduled.
            assert cron["spec"].get("suspend", False) is (action != "update")


def test_local_overlay_shares_one_snapshot_volume(resources):
    docs = resources["local"]
    claims = set()
    for name, spec in pod_specs(docs).items():
        for v in spec.get("volumes", []):
            if v["name"] == "snapshots":
                claims.add((name, v["persistentVolumeClaim"]["claimName"]))
    assert {claim for _, claim in claims} == {"snapshots"}
    assert {name for name, _ in claims} == {"Deployment/retrieval", "Job/indexer-build", "CronJob/indexer-update",
                                            "CronJob/indexer-verify", "CronJob/indexer-rollback"}
    assert "snapshots" in by_kind(docs, "PersistentVolumeClaim")
    assert yaml.safe_dump(by_kind(docs, "Deployment")["dynalite"]["spec"]["strategy"]) == "type: Recreate\n"


# ---------------------------------------------------------------- the runbook matches the manifests

RUNBOOK = REPO / "docs" / "operations.md"
KIND_ALIASES = {"deployment": "Deployment", "job": "Job", "cronjob": "CronJob", "hpa": "HorizontalPodAutoscaler",
                "service": "Service", "svc": "Service", "pdb": "PodDisruptionBudget", "configmap": "ConfigMap"}


def runbook_commands() -> list[str]:
    """Every kubectl command in the runbook's code (indented blocks and inline code), continuations joined."""
    text = RUNBOOK.read_text()
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()
    commands = []
    for line in lines:
        for part in [line.strip()] if line.startswith("    ") else re.findall(r"`([^`]*kubectl[^`]*)`", line):
            for cmd in re.split(r"\s*(?:\|\||&&|\||;)\s*", part):
                cmd = cmd.strip().lstrip("(").rstrip(")")
                # A bare mention in prose ("`kubectl apply` resets ...") is not a command to check.
                if cmd.startswith("kubectl ") and len(cmd.split()) > 2:
                    commands.append(cmd)
    return commands


def test_runbook_has_commands():
    commands = runbook_commands()
    assert len(commands) > 20
    assert "kubectl apply -k k8s/overlays/prod" in commands and "kubectl apply -k k8s/overlays/local" in commands


@pytest.mark.parametrize("command", runbook_commands())
def test_runbook_command_matches_manifests(command, resources):
    words = command.split()
    overlays = {name: docs for name, docs in resources.items()}
    if "-k" in words:
        target = words[words.index("-k") + 1]
        assert (REPO / target / "kustomization.yaml").exists(), target
        return
    if words[1] in ("kustomize", "config") or words[1:3] == ["create", "namespace"]:
        return
    assert words[1:3] == ["-n", "kotoba"], f"every namespaced command names the namespace: {command}"
    everywhere = [d for docs in overlays.values() for d in docs]
    named = {(d["kind"], d["metadata"]["name"]) for d in everywhere}
    for kind, name in re.findall(r"\b(deployment|job|cronjob|hpa|service|svc|pdb|configmap)/([a-z0-9-]+)", command):
        if kind == "job" and ("create job" in command):
            continue
        assert (KIND_ALIASES[kind], name) in named, f"{kind}/{name} in `{command}` is not in the manifests"
    # `kubectl get hpa/gateway hpa/retrieval` style lists are covered above; bare `get hpa` is fine.
    if "-c" in words:
        container = words[words.index("-c") + 1]
        (deployment,) = re.findall(r"deployment/([a-z0-9-]+)", command)
        containers = {c["name"] for d in everywhere if d["kind"] == "Deployment"
                      and d["metadata"]["name"] == deployment for c in d["spec"]["template"]["spec"]["containers"]}
        assert container in containers, command
    for selector in re.findall(r"-l\s+(\S+)", command):
        key, _, value = selector.partition("=")
        assert any(s_doc_labels.get(key) == value for s_doc_labels in _pod_labels(everywhere)), command
    if "create secret" in command:
        assert "kotoba-secrets" in command
        referenced = _secret_keys(everywhere)
        for key in re.findall(r"--from-literal=([A-Z_]+)=", command):
            assert key in referenced, f"{key} is not read by any workload"


def test_runbook_names_every_secret_key(resources):
    everywhere = [d for docs in resources.values() for d in docs]
    text = RUNBOOK.read_text()
    for key in _secret_keys(everywhere):
        assert f"--from-literal={key}=" in text, f"the runbook never shows how to set {key}"


def _pod_labels(docs: list[dict]) -> list[dict]:
    labels = []
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            labels.append(d["spec"]["template"]["metadata"]["labels"])
        elif d["kind"] == "CronJob":
            labels.append(d["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"])
    return labels


def _secret_keys(docs: list[dict]) -> set[str]:
    keys = set()
    for spec in pod_specs(docs).values():
        for c in all_containers(spec):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    keys.add(ref["key"])
        for v in spec.get("volumes", []):
            keys.update(item["key"] for item in v.get("secret", {}).get("items", []))
    return keys
