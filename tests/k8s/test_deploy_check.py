"""deploy-check's manifest analysis (deploy/manifests.py) without containers: the real overlays are clean,
and a broken copy fails with a message naming the workload."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from deploy.manifests import analyse

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("overlay", ["local", "prod"])
def test_overlays_have_no_problems(overlay):
    result = analyse(REPO / "k8s" / "overlays" / overlay)
    assert result.problems == []
    names = {w.id for w in result.workloads}
    assert {"Deployment/gateway", "Deployment/retrieval", "Deployment/tools", "Deployment/conversations",
            "Job/indexer-build", "CronJob/indexer-update", "CronJob/indexer-verify"} <= names


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "k8s", tmp_path / "k8s")
    return tmp_path / "k8s"


def _edit(path: Path, name: str, change) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    for d in docs:
        if d and d["metadata"]["name"] == name and d["kind"] in ("Deployment", "Job", "CronJob"):
            change(d["spec"]["template"]["spec"]["containers"][0])
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def _missing_secret_key(k8s: Path) -> str:
    def change(c):
        for e in c["env"]:
            if e["name"] == "KOTOBA_PSEUDONYM_KEY":
                e["valueFrom"]["secretKeyRef"]["key"] = "KOTOBA_PSEUDONYM_KEY_V2"
    _edit(k8s / "overlays" / "prod" / "patches" / "secrets-required.yaml", "conversations", change)
    return "Deployment/conversations container conversations: env KOTOBA_PSEUDONYM_KEY needs key " \
           "'KOTOBA_PSEUDONYM_KEY_V2'"


def _wrong_probe_port(k8s: Path) -> str:
    def change(c):
        c["readinessProbe"]["grpc"]["port"] = 50052
    _edit(k8s / "base" / "retrieval.yaml", "retrieval", change)
    return "Deployment/retrieval container retrieval: readinessProbe probes port 50052 but the service " \
           "listens on 0.0.0.0:50051"


def _required_variable_gone(k8s: Path) -> str:
    path = k8s / "overlays" / "prod" / "patches" / "secrets-required.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d["metadata"]["name"] != "tools"]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    base = k8s / "base" / "tools.yaml"
    _edit(base, "tools", lambda c: c.update(env=[e for e in c["env"] if e["name"] != "KOTOBA_TOOLS_PAGE_SECRET"]))
    return "Deployment/tools container tools: the service would exit at start: KOTOBA_TOOLS_PAGE_SECRET"


def _unmounted_token(k8s: Path) -> str:
    path = k8s / "overlays" / "prod" / "patches" / "secrets-required.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    for d in docs:
        if d and d["metadata"]["name"] == "gateway" and "volumes" in d["spec"]["template"]["spec"]:
            d["spec"]["template"]["spec"]["containers"][0].pop("volumeMounts")
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return "Deployment/gateway container gateway: KOTOBA_GATEWAY_SERVICE_TOKEN_FILE=/var/run/secrets/kotoba/" \
           "service-token is not on a mounted volume"


@pytest.mark.parametrize("breakage", [_missing_secret_key, _wrong_probe_port, _required_variable_gone,
                                      _unmounted_token])
def test_broken_prod_copy_names_the_workload(breakage, tmp_path):
    k8s = _copy(tmp_path)
    expected = breakage(k8s)
    problems = analyse(k8s / "overlays" / "prod").problems
    assert any(p.startswith(expected) for p in problems), problems


def test_sidecar_probe_on_loopback_port_is_refused(tmp_path):
    k8s = _copy(tmp_path)
    patch = k8s / "overlays" / "local" / "patches" / "gateway-live-sidecar.yaml"
    doc = yaml.safe_load(patch.read_text())
    live = doc["spec"]["template"]["spec"]["initContainers"][0]
    live["startupProbe"] = {"tcpSocket": {"port": 8765}, "periodSeconds": 1, "failureThreshold": 120}
    patch.write_text(yaml.safe_dump(doc, sort_keys=False))
    problems = analyse(k8s / "overlays" / "local").problems
    assert any(p.startswith("Deployment/gateway container live: startupProbe probes port 8765 on the pod IP")
               for p in problems), problems
