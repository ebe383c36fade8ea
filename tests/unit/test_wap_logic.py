"""Pure write-audit-publish and branch logic, settings and the Dagster instance choice."""

from __future__ import annotations

import os

import pytest

from dfp import settings
from dfp.lake.branches import BranchNameError, partition_changes, validate_user_branch_name
from dfp.lake.wap import (
    LAKEFS_UI_LINK_KEY,
    RUN_BRANCH_PREFIX,
    RunAudit,
    is_run_branch,
    publish_metadata,
    run_branch_name,
    run_id_of,
)
from dfp.settings import LakeFSSettings, read_env_file
from dfp.stack import dagster_home

RUN_ID = "3f2a9c1e-0b7d-4e4f-9a51-8c0d2e6b7a10"
LAKEFS_ENV = ("LAKEFS_ENDPOINT", "LAKEFS_ACCESS_KEY_ID", "LAKEFS_SECRET_ACCESS_KEY")
PG_ENV = ("DAGSTER_PG_HOST", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")


def _unset(monkeypatch, *names: str) -> None:
    """Remove variables so that monkeypatch also removes any the code under test sets."""
    for name in names:
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)


# -- run branches ---------------------------------------------------------------------------
def test_run_branch_round_trip():
    branch = run_branch_name(RUN_ID)
    assert branch == f"dfp-run-{RUN_ID}"
    assert branch.startswith(RUN_BRANCH_PREFIX)
    assert is_run_branch(branch)
    assert run_id_of(branch) == RUN_ID


@pytest.mark.parametrize("branch", ["main", "exp-1", "dfp-runner", "my-dfp-run-1", "dfp_run_1"])
def test_user_branches_are_not_run_branches(branch):
    assert not is_run_branch(branch)
    assert run_id_of(branch) is None


# -- RunAudit -------------------------------------------------------------------------------
def test_all_passed_is_publishable():
    audit = RunAudit(passed_checks=["raw_schema", "label_balance"], materialized={"a": 1})
    assert audit.publishable
    assert audit.reason() == "all steps and checks passed"
    assert RunAudit().publishable


def test_failed_steps_block_publishing():
    audit = RunAudit(failed_steps=["raw_kronodroid", "features"], passed_checks=["x"])
    assert not audit.publishable
    assert audit.reason() == "failed steps: features, raw_kronodroid"


def test_failed_checks_block_publishing():
    audit = RunAudit(failed_checks=["raw_schema"], passed_checks=["label_balance"])
    assert not audit.publishable
    assert audit.reason() == "failed checks: raw_schema"


def test_failed_steps_and_checks_are_both_reported():
    audit = RunAudit(failed_steps=["b", "a"], failed_checks=["z", "y"])
    assert not audit.publishable
    assert audit.reason() == "failed steps: a, b; failed checks: y, z"


# -- publish_metadata -----------------------------------------------------------------------
def test_publish_metadata(monkeypatch):
    monkeypatch.setenv("DFP_DAGSTER_URL", "https://dagster.example.org/")
    audit = RunAudit(
        passed_checks=["raw_schema", "row_count_floor", "label_balance"],
        materialized={"raw_kronodroid": 142_128, "report": None, "empty": 0},
    )
    meta = publish_metadata(RUN_ID, "exp-1", audit)
    assert meta == {
        "dagster_run_id": RUN_ID,
        "dagster_partition": "exp-1",
        "dagster_assets": "empty,raw_kronodroid,report",
        "dagster_checks_passed": "3",
        LAKEFS_UI_LINK_KEY: f"https://dagster.example.org/runs/{RUN_ID}",
        "rows.raw_kronodroid": "142128",
        "rows.empty": "0",
    }
    assert LAKEFS_UI_LINK_KEY == "::lakefs::Dagster::url[url:ui]"
    assert "rows.report" not in meta
    assert all(isinstance(v, str) for v in meta.values())


def test_publish_metadata_default_dagster_url(monkeypatch):
    _unset(monkeypatch, "DFP_DAGSTER_URL")
    meta = publish_metadata("r1", "main", RunAudit())
    assert meta[LAKEFS_UI_LINK_KEY] == "http://127.0.0.1:3000/runs/r1"
    assert meta["dagster_assets"] == ""
    assert not [k for k in meta if k.startswith("rows.")]


# -- partitions mirror user branches --------------------------------------------------------
def test_partition_changes_adds_and_removes():
    add, remove = partition_changes(["main", "exp-2", "exp-1"], ["main", "old"])
    assert (add, remove) == (["exp-1", "exp-2"], ["old"])


def test_partition_changes_ignores_run_branches():
    branches = ["main", run_branch_name("r1"), "dfp-run-r2"]
    add, remove = partition_changes(branches, ["main"])
    assert (add, remove) == ([], [])
    # A run branch that somehow became a partition is removed.
    add, remove = partition_changes(branches, ["main", "dfp-run-r2"])
    assert (add, remove) == ([], ["dfp-run-r2"])


def test_partition_changes_in_sync_is_idempotent():
    branches = ["main", "exp-1", "dfp-run-x"]
    add, remove = partition_changes(branches, [])
    partitions = set(add) - set(remove)
    assert partitions == {"main", "exp-1"}
    assert partition_changes(branches, sorted(partitions)) == ([], [])
    assert partition_changes(iter(branches), iter(["exp-1", "main"])) == ([], [])


@pytest.mark.parametrize("name", ["exp-1", "feature_x", "main", "_tmp", "1st", "A-b_C-9"])
def test_valid_user_branch_names(name):
    assert validate_user_branch_name(name) == name


@pytest.mark.parametrize("name", ["bad name", "-x", "a/b", "", "exp.1", "x:y", "ünïcode-ok?"])
def test_invalid_user_branch_names(name):
    with pytest.raises(BranchNameError, match="invalid branch name"):
        validate_user_branch_name(name)


def test_run_branch_names_are_reserved():
    with pytest.raises(BranchNameError, match="reserved for ephemeral runs") as exc:
        validate_user_branch_name("dfp-run-1")
    assert "'dfp-run-'" in str(exc.value)


@pytest.mark.parametrize("name", ["exp-1\n", "café"])
def test_branch_names_lakefs_would_reject(name):
    with pytest.raises(BranchNameError):
        validate_user_branch_name(name)


# -- settings -------------------------------------------------------------------------------
def test_read_env_file(tmp_path):
    path = tmp_path / "stack.env"
    path.write_text(
        "# written by dfp stack up\n"
        "\n"
        "LAKEFS_ENDPOINT=http://127.0.0.1:8000\n"
        "   # indented comment\n"
        "  SPACED_KEY  =  spaced value  \n"
        "DSN=postgresql://u:p@h:5432/db?sslmode=disable&x=1\n"
        "EMPTY=\n"
        "not a key value line\n"
        "LAKEFS_ENDPOINT=http://override:8000\n"
    )
    assert read_env_file(path) == {
        "LAKEFS_ENDPOINT": "http://override:8000",
        "SPACED_KEY": "spaced value",
        "DSN": "postgresql://u:p@h:5432/db?sslmode=disable&x=1",
        "EMPTY": "",
    }


def test_read_env_file_missing(tmp_path):
    assert read_env_file(tmp_path / "absent.env") == {}


def test_lakefs_settings_names_the_missing_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("DFP_HOME", str(tmp_path))
    _unset(monkeypatch, *LAKEFS_ENV, "LAKEFS_REPOSITORY")
    assert not settings.stack_env_file().exists()
    with pytest.raises(RuntimeError) as exc:
        LakeFSSettings.from_env()
    message = str(exc.value)
    assert message.startswith("lakeFS is not configured: ")
    for name in LAKEFS_ENV:
        assert name in message

    monkeypatch.setenv("LAKEFS_ENDPOINT", "http://127.0.0.1:8000")
    with pytest.raises(RuntimeError) as exc:
        LakeFSSettings.from_env()
    assert "LAKEFS_ENDPOINT" not in str(exc.value)
    assert "LAKEFS_ACCESS_KEY_ID, LAKEFS_SECRET_ACCESS_KEY unset" in str(exc.value)


def test_lakefs_settings_from_env_and_stack_file(monkeypatch, tmp_path):
    monkeypatch.setenv("DFP_HOME", str(tmp_path))
    _unset(monkeypatch, *LAKEFS_ENV, "LAKEFS_REPOSITORY")
    (tmp_path / "stack.env").write_text(
        "LAKEFS_ENDPOINT=http://from-file:8000\nLAKEFS_ACCESS_KEY_ID=AKFILE\n"
        "LAKEFS_SECRET_ACCESS_KEY=secret-file\n"
    )
    monkeypatch.setenv("LAKEFS_ACCESS_KEY_ID", "AKENV")  # explicit environment wins
    assert LakeFSSettings.from_env() == LakeFSSettings(
        endpoint="http://from-file:8000",
        access_key_id="AKENV",
        secret_access_key="secret-file",
        repository="kronodroid",
    )


# -- Dagster instance config ----------------------------------------------------------------
def test_sqlite_instance_by_default(monkeypatch):
    _unset(monkeypatch, *PG_ENV, "DAGSTER_PG_PORT")
    source = dagster_home.instance_config_source()
    assert source == settings.PROJECT_ROOT / "dagster.yaml"
    assert source.is_file()


def test_postgres_instance_when_configured(monkeypatch):
    _unset(monkeypatch, "DAGSTER_PG_PORT")
    for name in PG_ENV:
        monkeypatch.setenv(name, f"value-of-{name.lower()}")
    source = dagster_home.instance_config_source()
    assert source == settings.PROJECT_ROOT / "deploy" / "dagster" / "dagster-postgres.yaml"
    assert source.is_file()
    assert "postgres" in source.read_text().lower()
    assert os.environ["DAGSTER_PG_PORT"] == "5432"


def test_postgres_instance_keeps_an_explicit_port(monkeypatch):
    for name in PG_ENV:
        monkeypatch.setenv(name, "v")
    monkeypatch.setenv("DAGSTER_PG_PORT", "6543")
    dagster_home.instance_config_source()
    assert os.environ["DAGSTER_PG_PORT"] == "6543"


def test_postgres_host_alone_names_the_missing_variables(monkeypatch):
    _unset(monkeypatch, *PG_ENV, "DAGSTER_PG_PORT")
    monkeypatch.setenv("DAGSTER_PG_HOST", "db.example.org")
    with pytest.raises(RuntimeError) as exc:
        dagster_home.instance_config_source()
    assert str(exc.value) == (
        "DAGSTER_PG_HOST is set but DAGSTER_PG_USERNAME, DAGSTER_PG_PASSWORD, DAGSTER_PG_DB are not"
    )
    monkeypatch.setenv("DAGSTER_PG_USERNAME", "dagster")
    with pytest.raises(RuntimeError) as exc:
        dagster_home.instance_config_source()
    assert "DAGSTER_PG_USERNAME" not in str(exc.value)
    assert "DAGSTER_PG_PASSWORD, DAGSTER_PG_DB" in str(exc.value)


def test_landing_changed_looks_only_at_the_landing_area():
    from dfp.kronodroid.sources import LANDING_PREFIX
    from dfp.lake.branches import landing_changed
    from dfp.lake.lakefs_client import DiffEntry

    def entry(path: str, kind: str = "added") -> DiffEntry:
        return DiffEntry(kind, path, 1)

    assert landing_changed([entry("landing/kronodroid/kronodroid_emulator.csv")], LANDING_PREFIX)
    assert landing_changed(
        [entry("raw/x.parquet"), entry("landing/kronodroid/a.csv", "removed")], LANDING_PREFIX
    )
    assert not landing_changed(
        [entry("benchmarks/pixel-8/a.json"), entry("raw/x.parquet")], LANDING_PREFIX
    )
    assert not landing_changed([entry("landing/kronodroid/", "prefix_changed")], LANDING_PREFIX)
    assert not landing_changed([], LANDING_PREFIX)


def test_moved_heads_keeps_one_head_per_partition_branch():
    from dfp.lake.branches import moved_heads

    heads = {"main": "c2", "exp-1": "e1", "new": "n1"}
    moved, cursor = moved_heads(heads, ["main", "exp-1"], {"main": "c1", "exp-1": "e1"})
    assert moved == [("main", "c2", "c1")]
    assert cursor == {"exp-1": "e1", "main": "c2"}  # "new" waits for its partition
    moved, _ = moved_heads(heads, ["main", "new"], {})
    assert moved == [("main", "c2", None), ("new", "n1", None)]
