"""Constants and the boto3 client for tests that call the real simulator process (see conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY = "AKIDSIMTEST"
SECRET = "sim-test-secret"
DEFAULT_TOKENS = 16


def boto3_client(endpoint: str, *, access_key: str = ACCESS_KEY, secret: str = SECRET) -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        # No retries: the error tests must see the first answer, and quickly.
        config=Config(retries={"total_max_attempts": 1}, read_timeout=10, connect_timeout=5),
    )
