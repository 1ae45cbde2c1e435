"""DynamoDB and S3 client factories honouring endpoint overrides (dynalite, moto, AWS)."""

from __future__ import annotations

import json
import os
import sys
import threading

import boto3
from botocore.config import Config as BotoConfig

from services.common.config import AwsConfig

# Short timeouts and bounded retries with jitter (botocore "standard" mode):
# a stalled local store must surface as an error, not a hung turn.
_BOTO = BotoConfig(
    connect_timeout=2,
    read_timeout=5,
    retries={"max_attempts": 3, "mode": "standard"},
    max_pool_connections=32,
)


def _ensure_local_credentials(endpoint: str) -> None:
    # Local stand-ins accept any credentials but botocore insists on some.
    if endpoint and not os.environ.get("AWS_ACCESS_KEY_ID") and not os.environ.get("AWS_PROFILE"):
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")


# IAM from evidence (deploy/iam.py): when set, every AWS call this process makes is appended to this
# file as one JSON line {workload, service, operation, resources}; tests/support/iam_record.py sets it
# for every test run.
OPLOG_VAR = "IAM_EVIDENCE_FILE"
WORKLOADS = ("gateway", "retrieval", "tools", "conversations", "indexer")
_oplog_lock = threading.Lock()


def _workload() -> str:
    """The workload making the call: the service process (python -m services.<workload>), else (a test
    calling service code in-process) the innermost services/<workload>/ frame. The process comes first
    because workloads share code: retrieval reads snapshots through services/snapshots/store.py."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = (spec.name if spec else "").split(".")
    if len(name) > 1 and name[0] == "services" and name[1] in WORKLOADS:
        return name[1]
    frame = sys._getframe(2)
    while frame is not None:
        parts = frame.f_code.co_filename.replace("\\", "/").split("/services/")
        if len(parts) > 1 and parts[-1].split("/")[0] in WORKLOADS:
            return parts[-1].split("/")[0]
        frame = frame.f_back
    return ""


def _resources(service: str, params: dict) -> list[str]:
    if service == "dynamodb":
        tables = [params["TableName"]] if "TableName" in params else list(params.get("RequestItems", {}))
        for item in params.get("TransactItems", []):
            tables += [op["TableName"] for op in item.values() if "TableName" in op]
        index = params.get("IndexName")
        return [f"table/{t}" + (f"/index/{index}" if index else "") for t in tables]
    if service == "s3":
        return [f"bucket/{params['Bucket']}"] if "Bucket" in params else []
    if service == "bedrock-runtime":
        return [f"foundation-model/{params['modelId']}"] if "modelId" in params else []
    return []


def _record(model, params, **_) -> None:
    path = os.environ.get(OPLOG_VAR)
    workload = _workload()
    if not path or not workload:
        return
    service = model.service_model.service_name
    line = json.dumps({"workload": workload, "service": service, "operation": model.name,
                       "resources": _resources(service, params)})
    with _oplog_lock, open(path, "a") as f:
        f.write(line + "\n")


def session() -> boto3.session.Session:
    """A boto3 session; every AWS call it makes is recorded for the IAM policies when the oplog is on."""
    s = boto3.session.Session()
    if os.environ.get(OPLOG_VAR):
        # before-parameter-build carries the API parameters (table, bucket); before-call only the
        # serialised request.
        s.events.register("before-parameter-build", _record)
    return s


def dynamodb_client(aws: AwsConfig, boto_config: BotoConfig | None = None):
    """A DynamoDB client for the configured region and endpoint (moto locally)."""
    _ensure_local_credentials(aws.dynamodb_endpoint)
    return session().client(
        "dynamodb", region_name=aws.region, endpoint_url=aws.dynamodb_endpoint or None,
        config=boto_config or _BOTO,
    )


def dynamodb_resource(aws: AwsConfig, boto_config: BotoConfig | None = None):
    """A DynamoDB resource for the configured region and endpoint (moto locally)."""
    _ensure_local_credentials(aws.dynamodb_endpoint)
    return session().resource(
        "dynamodb", region_name=aws.region, endpoint_url=aws.dynamodb_endpoint or None,
        config=boto_config or _BOTO,
    )


def s3_client(aws: AwsConfig, boto_config: BotoConfig | None = None):
    """An S3 client for the configured region and endpoint (moto locally)."""
    _ensure_local_credentials(aws.s3_endpoint)
    return session().client(
        "s3", region_name=aws.region, endpoint_url=aws.s3_endpoint or None, config=boto_config or _BOTO,
    )
