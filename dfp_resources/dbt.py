"""dbt through dagster-dbt's `DbtCliResource`, which is imported only when a step runs dbt.

The fields are dagster-dbt's (so the launchpad shows the project, profiles and target); the
resource class itself loads with the definitions, and dagster-dbt, about twice the cost of
`import dagster`, does not.
"""

from typing import Any

import dagster as dg


class DbtResource(dg.ConfigurableResource):
    project_dir: str
    profiles_dir: str
    dbt_executable: str = "dbt"
    target: str | None = None

    def cli_resource(self) -> Any:
        """dagster-dbt's `DbtCliResource` with this config (less its unused start-up work)."""
        from dfp_assets.platform.dagster_private import lean_dbt_cli_resource

        return lean_dbt_cli_resource(
            project_dir=self.project_dir,
            profiles_dir=self.profiles_dir,
            dbt_executable=self.dbt_executable,
            target=self.target,
        )
