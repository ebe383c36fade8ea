"""The dbt CLI resource the dbt steps use skips dagster-dbt's `dbt --version` subprocess and
adapter handle, and still asks a dbt other than the one beside this Python for its version."""

import stat
from importlib.metadata import version

from packaging.version import Version

from dfp_assets.platform.dagster_private import lean_dbt_cli_resource
from dfp_resources.environment import DBT_PROJECT_DIR, dbt_executable


def resource(executable: str):
    return lean_dbt_cli_resource(
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=str(DBT_PROJECT_DIR),
        dbt_executable=executable,
    )


def test_the_venv_dbt_reports_the_installed_dbt_core_without_a_subprocess(monkeypatch):
    import dagster_dbt.core.resource as dagster_dbt_resource

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"ran {args[0]!r}")

    # Where dagster-dbt runs `dbt --version` from.
    monkeypatch.setattr(dagster_dbt_resource, "check_output", no_subprocess)
    lean = resource(dbt_executable())
    assert lean._cli_version == Version(version("dbt-core"))
    assert lean._initialize_dbt_core_adapter(["build"]) is None


def test_another_dbt_is_asked_for_its_version(tmp_path):
    other = tmp_path / "dbt"
    other.write_text("#!/bin/sh\necho 'Core:\n  - installed: 2.0.7'\n")
    other.chmod(other.stat().st_mode | stat.S_IEXEC)
    assert resource(str(other))._cli_version == Version("2.0.7")
