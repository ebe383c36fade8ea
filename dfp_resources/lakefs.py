"""The lakeFS resource: one per repository, credentials from the environment."""

from typing import Any

import dagster as dg

from dfp.lake import wap
from dfp.lake.lakefs_client import LakeFSClient
from dfp.settings import DEFAULT_REPOSITORY, LakeFSSettings


class LakeFSResource(dg.ConfigurableResource):
    """lakeFS over lakefs-sdk: branches, commits, diffs, merges, objects, S3-gateway settings.

    Assets never write to their partition's branch: `run_branch(context)` is the hidden
    write-audit-publish branch the run's executor created for them.
    """

    endpoint: str
    access_key_id: str
    secret_access_key: str
    repository: str = DEFAULT_REPOSITORY

    @classmethod
    def from_env_vars(cls) -> "LakeFSResource":
        """Endpoint, keys and repository as variables read when a run starts (`dg.EnvVar`)."""
        return cls(
            endpoint=dg.EnvVar("LAKEFS_ENDPOINT"),
            access_key_id=dg.EnvVar("LAKEFS_ACCESS_KEY_ID"),
            secret_access_key=dg.EnvVar("LAKEFS_SECRET_ACCESS_KEY"),
            repository=dg.EnvVar("LAKEFS_REPOSITORY"),
        )

    def settings(self) -> LakeFSSettings:
        return LakeFSSettings(
            endpoint=self.endpoint,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            repository=self.repository,
        )

    def client(self) -> LakeFSClient:
        return LakeFSClient(self.settings())

    def run_branch(self, context: dg.OpExecutionContext | dg.AssetCheckExecutionContext) -> str:
        """The run's write-audit-publish branch; fails clearly if the run has none."""
        branch = wap.run_branch_name(context.run.run_id)
        with self.client() as client:
            exists = client.branch_exists(branch)
        if not exists:
            raise dg.Failure(
                f"lakeFS run branch '{branch}' does not exist. dfp assets must run through the "
                "write-audit-publish executor of dfp's Definitions (dagster dev, "
                "`dagster asset materialize`, dagster.execute_job), not materialize()/"
                "execute_in_process, which replace the executor."
            )
        return branch

    def dlt_credentials(self) -> dict[str, Any]:
        """dlt filesystem-destination credentials for lakeFS's S3 gateway."""
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "endpoint_url": self.endpoint,
            "region_name": "us-east-1",
            "s3_url_style": "path",
        }
