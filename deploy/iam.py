"""IAM from evidence: per-ServiceAccount policies generated from the AWS calls the code really makes.

services/common/aws.py logs every call (botocore `before-call`) when IAM_EVIDENCE_FILE is set;
tests/support/iam_record.py sets it for each test run. `KOTOBA_IAM_RECORD=1 pytest …` merges what a run
saw into k8s/iam/operations.json and regenerates k8s/overlays/prod/iam/<workload>.json; every other run
fails when a workload called an action its generated policy lacks.

    .venv/bin/python -m deploy.iam generate     # operations.json -> prod policy documents
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVIDENCE = REPO / "k8s" / "iam" / "operations.json"
POLICY_DIR = REPO / "k8s" / "overlays" / "prod" / "iam"
PROD = REPO / "k8s" / "overlays" / "prod"
TABLES = ("items", "progress", "settings", "conversations", "connections", "usage")
# botocore operation -> IAM action where they differ (S3 mostly).
S3_ACTIONS = {"HeadObject": ["s3:GetObject"], "ListObjectsV2": ["s3:ListBucket"], "ListObjects": ["s3:ListBucket"],
              "HeadBucket": ["s3:ListBucket"], "DeleteObjects": ["s3:DeleteObject"],
              "CopyObject": ["s3:GetObject", "s3:PutObject"]}
WORKLOADS = ("gateway", "retrieval", "tools", "conversations", "indexer")


def actions(service: str, operation: str) -> list[str]:
    if service == "s3":
        return S3_ACTIONS.get(operation, [f"s3:{operation}"])
    if service == "bedrock-runtime":
        return [f"bedrock:{operation}"]
    return [f"{service}:{operation}"]


def logical(service: str, resource: str) -> str:
    """A recorded resource without the run's names: tests use random table prefixes and buckets."""
    if service == "dynamodb":
        m = re.match(r"table/([^/]+)(/index/.+)?$", resource)
        if m:
            name = next((t for t in TABLES if m.group(1).endswith(t)), m.group(1))
            return f"table/{name}{m.group(2) or ''}"
    if service == "s3":
        return "bucket/snapshots"
    return resource


def normalise(lines: list[dict]) -> dict[str, list[dict]]:
    """{workload: sorted [{action, resource}]} from raw log lines."""
    seen: dict[str, set[tuple[str, str]]] = {}
    for line in lines:
        for action in actions(line["service"], line["operation"]):
            for resource in line["resources"] or ["*"]:
                seen.setdefault(line["workload"], set()).add((action, logical(line["service"], resource)))
    return {w: [{"action": a, "resource": r} for a, r in sorted(v)] for w, v in sorted(seen.items())}


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def merge(old: dict[str, list[dict]], new: dict[str, list[dict]]) -> dict[str, list[dict]]:
    out = {w: {(e["action"], e["resource"]) for e in v} for w, v in old.items()}
    for w, v in new.items():
        out.setdefault(w, set()).update((e["action"], e["resource"]) for e in v)
    return {w: [{"action": a, "resource": r} for a, r in sorted(v)] for w, v in sorted(out.items())}


def _prod_settings() -> dict[str, str]:
    text = (PROD / "kustomization.yaml").read_text()
    settings = dict(re.findall(r"^\s*- (KOTOBA_\w+|AWS_REGION)=(.*)$", text, re.M))
    account = re.search(r"arn:aws:iam::(\d+):role", (PROD / "patches" / "irsa.yaml").read_text()).group(1)
    return {**settings, "ACCOUNT": account}


def arn(service_action: str, resource: str, s: dict[str, str]) -> str:
    region, account = s.get("AWS_REGION", "us-east-1"), s["ACCOUNT"]
    if resource.startswith("table/"):
        name, _, index = resource[len("table/"):].partition("/index/")
        table = s.get("KOTOBA_TABLE_PREFIX", "kotoba-") + name
        return f"arn:aws:dynamodb:{region}:{account}:table/{table}" + (f"/index/{index}" if index else "")
    if resource == "bucket/snapshots":
        bucket, _, prefix = s["KOTOBA_SNAPSHOT_URI"].removeprefix("s3://").partition("/")
        if service_action == "s3:ListBucket":
            return f"arn:aws:s3:::{bucket}"
        return f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}*"
    if resource.startswith("foundation-model/"):
        return f"arn:aws:bedrock:{region}::{resource}"
    return "*"


def policy(entries: list[dict], s: dict[str, str]) -> dict:
    by_resources: dict[tuple[str, ...], set[str]] = {}
    grouped: dict[str, set[str]] = {}
    for e in entries:
        grouped.setdefault(e["action"], set()).add(arn(e["action"], e["resource"], s))
    for action, arns in grouped.items():
        by_resources.setdefault(tuple(sorted(arns)), set()).add(action)
    statements = []
    for arns, acts in sorted(by_resources.items(), key=lambda kv: sorted(kv[1])):
        statements.append({"Effect": "Allow", "Action": sorted(acts),
                           "Resource": arns[0] if len(arns) == 1 else list(arns)})
    return {"Version": "2012-10-17", "Statement": statements}


def load_evidence() -> dict[str, list[dict]]:
    return json.loads(EVIDENCE.read_text())["workloads"] if EVIDENCE.exists() else {}


def write_evidence(evidence: dict[str, list[dict]]) -> None:
    EVIDENCE.parent.mkdir(parents=True, exist_ok=True)
    EVIDENCE.write_text(json.dumps({
        "about": "AWS actions each workload was seen calling in the test suite (services/common/aws.py "
                 "before-call hook); generated by KOTOBA_IAM_RECORD=1 pytest, see deploy/iam.py",
        "workloads": evidence}, indent=2) + "\n")


def generate(evidence: dict[str, list[dict]] | None = None) -> dict[str, dict]:
    evidence = load_evidence() if evidence is None else evidence
    s = _prod_settings()
    return {w: policy(evidence.get(w, []), s) for w in WORKLOADS if evidence.get(w)}


def write_policies() -> list[Path]:
    POLICY_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for w, doc in generate().items():
        path = POLICY_DIR / f"{w}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        written.append(path)
    return written


def missing(lines: list[dict]) -> list[str]:
    """Calls a committed prod policy does not allow, as messages naming the workload."""
    s = _prod_settings()
    problems = []
    for w, entries in normalise(lines).items():
        path = POLICY_DIR / f"{w}.json"
        doc = json.loads(path.read_text()) if path.exists() else {"Statement": []}
        allowed = {(a, r) for st in doc["Statement"] for a in st["Action"]
                   for r in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])}
        for e in entries:
            if (e["action"], arn(e["action"], e["resource"], s)) not in allowed:
                problems.append(f"{w} called {e['action']} on {e['resource']}, which {path.relative_to(REPO)} "
                                "does not allow (record with KOTOBA_IAM_RECORD=1, see deploy/iam.py)")
    return problems


def main(argv: list[str]) -> int:
    if argv[:1] == ["generate"]:
        for path in write_policies():
            print(path.relative_to(REPO))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
