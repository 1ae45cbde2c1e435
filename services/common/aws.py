"""DynamoDB and S3 client factories honouring endpoint overrides (dynalite, moto, AWS)."""

from __future__ import annotations

import os

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


def dynamodb_client(aws: AwsConfig, boto_config: BotoConfig | None = None):
    """A DynamoDB client for the configured region and endpoint (moto locally)."""
    _ensure_local_credentials(aws.dynamodb_endpoint)
    return boto3.session.Session().client(
        "dynamodb", region_name=aws.region, endpoint_url=aws.dynamodb_endpoint or None,
        config=boto_config or _BOTO,
    )


def dynamodb_resource(aws: AwsConfig, boto_config: BotoConfig | None = None):
    """A DynamoDB resource for the configured region and endpoint (moto locally)."""
    _ensure_local_credentials(aws.dynamodb_endpoint)
    return boto3.session.Session().resource(
        "dynamodb", region_name=aws.region, endpoint_url=aws.dynamodb_endpoint or None,
        config=boto_config or _BOTO,
    )


def s3_client(aws: AwsConfig, boto_config: BotoConfig | None = None):
    """An S3 client for the configured region and endpoint (moto locally)."""
    _ensure_local_credentials(aws.s3_endpoint)
    return boto3.session.Session().client(
        "s3", region_name=aws.region, endpoint_url=aws.s3_endpoint or None, config=boto_config or _BOTO,
    )
