"""Create what dfp expects before its first run on docker-compose or Kubernetes.

`dfp stack up` does this for DFP_ENV=local; here the services are someone else's, so this
one-shot (compose service `dfp-bootstrap`, k8s Job `dfp-bootstrap`) creates:

1. the S3 buckets on SeaweedFS: lakeFS's blockstore (DFP_LAKEFS_BUCKET, default `lakefs`) and
   MLflow's artifacts (DFP_MLFLOW_BUCKET, default `mlflow`);
2. the lakeFS repository LAKEFS_REPOSITORY with storage namespace
   `s3://<lakeFS bucket>/<repository>` and default branch `main`.

Idempotent; waits (up to DFP_BOOTSTRAP_TIMEOUT seconds, default 300) for both services.
Endpoints and credentials only from the environment: DFP_S3_ENDPOINT, SEAWEEDFS_ACCESS_KEY,
SEAWEEDFS_SECRET_KEY, LAKEFS_ENDPOINT, LAKEFS_ACCESS_KEY_ID, LAKEFS_SECRET_ACCESS_KEY.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    buckets: tuple[str, ...]
    repository: str
    storage_namespace: str
    timeout_s: float


def plan_from_env(env: Mapping[str, str]) -> Plan:
    missing = [
        name
        for name in ("DFP_S3_ENDPOINT", "SEAWEEDFS_ACCESS_KEY", "SEAWEEDFS_SECRET_KEY")
        if not env.get(name)
    ]
    if missing:
        raise SystemExit(f"bootstrap: set {', '.join(missing)}")
    lakefs_bucket = env.get("DFP_LAKEFS_BUCKET", "lakefs")
    repository = env.get("LAKEFS_REPOSITORY", "kronodroid")
    return Plan(
        s3_endpoint=env["DFP_S3_ENDPOINT"],
        s3_access_key=env["SEAWEEDFS_ACCESS_KEY"],
        s3_secret_key=env["SEAWEEDFS_SECRET_KEY"],
        buckets=(lakefs_bucket, env.get("DFP_MLFLOW_BUCKET", "mlflow")),
        repository=repository,
        storage_namespace=f"s3://{lakefs_bucket}/{repository}",
        timeout_s=float(env.get("DFP_BOOTSTRAP_TIMEOUT", "300")),
    )


def retry(what: str, action: Callable[[], T], timeout_s: float) -> T:
    """`action()` once it stops raising, or the last error after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - services come up in any order
            if time.monotonic() > deadline:
                raise SystemExit(f"bootstrap: {what} failed for {timeout_s:.0f}s: {exc}") from exc
            print(f"bootstrap: waiting for {what} ({type(exc).__name__})", flush=True)
            time.sleep(2)


def ensure_buckets(plan: Plan) -> None:
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=plan.s3_endpoint,
        aws_access_key_id=plan.s3_access_key,
        aws_secret_access_key=plan.s3_secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )

    def create_missing() -> list[str]:
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        created = [name for name in plan.buckets if name not in existing]
        for name in created:
            s3.create_bucket(Bucket=name)
        return created

    created = retry(f"S3 at {plan.s3_endpoint}", create_missing, plan.timeout_s)
    print(f"bootstrap: buckets {list(plan.buckets)} ready (created {created})", flush=True)


def ensure_repository(plan: Plan) -> None:
    from dfp.lake.lakefs_client import LakeFSClient
    from dfp.settings import DEFAULT_BRANCH, LakeFSSettings

    client = LakeFSClient(LakeFSSettings.from_env())
    try:
        # lakeFS answers before its installation user exists: retry until the keys work.
        created = retry(
            f"lakeFS at {client.settings.endpoint}",
            lambda: client.ensure_repository(
                storage_namespace=plan.storage_namespace, default_branch=DEFAULT_BRANCH
            ),
            plan.timeout_s,
        )
    finally:
        client.close()
    state = "created" if created else "exists"
    print(f"bootstrap: repository {plan.repository} {state} ({plan.storage_namespace})")


def main() -> int:
    plan = plan_from_env(os.environ)
    ensure_buckets(plan)
    ensure_repository(plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
