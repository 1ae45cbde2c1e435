"""IAM from evidence: the prod policies are generated from the recorded calls, and a call outside them fails."""

from __future__ import annotations

import json
import subprocess
import sys

from deploy import iam
from services.common.aws import OPLOG_VAR


def test_committed_policies_are_generated_from_the_evidence():
    evidence = iam.load_evidence()
    assert set(evidence) >= {"gateway", "tools", "conversations", "retrieval", "indexer"} - {"retrieval"}
    for workload, doc in iam.generate(evidence).items():
        committed = json.loads((iam.POLICY_DIR / f"{workload}.json").read_text())
        assert committed == doc, f"k8s/overlays/prod/iam/{workload}.json was edited by hand: regenerate it"


def test_every_recorded_call_is_allowed():
    lines = [{"workload": w, "service": e["action"].split(":")[0].replace("bedrock", "bedrock-runtime"),
              "operation": e["action"].split(":")[1], "resources": [e["resource"]] if e["resource"] != "*" else []}
             for w, entries in iam.load_evidence().items() for e in entries
             if not e["action"].startswith("s3:")]
    assert iam.missing(lines) == []


def test_a_call_outside_the_policy_names_the_workload():
    problems = iam.missing([{"workload": "tools", "service": "dynamodb", "operation": "DeleteTable",
                             "resources": ["table/test-1234-items"]}])
    assert len(problems) == 1 and problems[0].startswith("tools called dynamodb:DeleteTable on table/items")


def test_service_process_calls_are_recorded(tmp_path, moto_endpoint):
    """A service process (python -m services.<name>) logs its AWS calls with table names."""
    log = tmp_path / "calls.jsonl"
    code = ("import runpy, sys; sys.argv = ['x']; "
            "from services.common.aws import dynamodb_client; from services.common.config import CommonConfig; "
            "c = dynamodb_client(CommonConfig.from_env().aws); "
            "c.list_tables(); "
            "import contextlib\nwith contextlib.suppress(Exception): c.get_item(TableName='kotoba-x-items', "
            "Key={'pk': {'S': 'a'}})")
    env = {"PATH": "/usr/bin:/bin", OPLOG_VAR: str(log), "KOTOBA_ENV": "local", "AWS_ENDPOINT_URL_DYNAMODB":
           moto_endpoint, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    script = tmp_path / "services" / "tools"
    script.mkdir(parents=True)
    (script / "probe.py").write_text(code)
    subprocess.run([sys.executable, str(script / "probe.py")], env={**env, "PYTHONPATH": str(iam.REPO)},
                   check=True, cwd=iam.REPO, timeout=60)
    lines = iam.read_log(log)
    assert {(x["workload"], x["operation"]) for x in lines} >= {("tools", "ListTables"), ("tools", "GetItem")}
    assert iam.normalise(lines)["tools"] == [{"action": "dynamodb:GetItem", "resource": "table/items"},
                                             {"action": "dynamodb:ListTables", "resource": "*"}]
