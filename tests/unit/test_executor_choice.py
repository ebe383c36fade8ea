"""Which executor a run gets when its config says nothing (UI launches, sensors): the one
settings object chooses, and the write-audit-publish wrapper applies it."""

from __future__ import annotations

import dagster as dg
import pytest

from dfp.settings import SettingsError, load_settings
from dfp_assets.platform.wap_executor import default_mode_config, lakefs_wap_executor
from dfp_resources.lakefs import LakeFSResource

# Never contacted: the wrapper talks to lakeFS only for runs tagged with a partition.
UNUSED_LAKEFS = LakeFSResource(
    endpoint="http://127.0.0.1:1", access_key_id="x", secret_access_key="x"
)


@pytest.mark.parametrize(
    ("env", "override", "expected"),
    [
        ("local", None, "in_process"),
        ("compose", None, "multiprocess"),
        ("k8s", None, "multiprocess"),
        ("local", "multiprocess", "multiprocess"),
        ("k8s", "in_process", "in_process"),
    ],
)
def test_default_executor_follows_the_environment(tmp_path, monkeypatch, env, override, expected):
    monkeypatch.setenv("DFP_HOME", str(tmp_path))
    monkeypatch.setenv("DFP_ENV", env)
    if override:
        monkeypatch.setenv("DFP_EXECUTOR", override)
    else:
        monkeypatch.delenv("DFP_EXECUTOR", raising=False)
    assert load_settings().executor() == expected


def test_bad_executor_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("DFP_HOME", str(tmp_path))
    monkeypatch.setenv("DFP_EXECUTOR", "celery")
    with pytest.raises(SettingsError, match=r"DFP_EXECUTOR='celery' is not one of"):
        load_settings()


@dg.op
def first() -> int:
    return 1


@dg.op
def second(value: int) -> int:
    return value + 1


def _job(default_mode: str | None, preload_modules: tuple[str, ...] = ()) -> dg.JobDefinition:
    @dg.job(
        executor_def=lakefs_wap_executor(
            UNUSED_LAKEFS, default_mode=default_mode, preload_modules=preload_modules
        )
    )
    def two_steps():
        second(first())

    return two_steps


def in_process_default() -> dg.JobDefinition:
    return _job("in_process")


def multiprocess_default() -> dg.JobDefinition:
    return _job("multiprocess")


def inner_default() -> dg.JobDefinition:
    return _job(None)


def forkserver_default() -> dg.JobDefinition:
    return _job("multiprocess", ("dagster",))


def _worker_processes(job_fn, run_config: dict | None = None) -> int:
    """Runs `job_fn`'s job; returns how many step worker processes it started."""
    with dg.instance_for_test() as instance:
        with dg.execute_job(
            dg.reconstructable(job_fn), instance=instance, run_config=run_config or {}
        ) as result:
            assert result.success
            return sum(
                e.event_type == dg.DagsterEventType.STEP_WORKER_STARTING for e in result.all_events
            )


def test_the_default_mode_decides_when_the_run_config_is_silent():
    assert _worker_processes(in_process_default) == 0
    assert _worker_processes(multiprocess_default) == 2
    assert _worker_processes(inner_default) == 2  # Dagster's own default: multiprocess
    assert _worker_processes(forkserver_default) == 2  # forked from the forkserver


def test_multiprocess_steps_fork_from_a_server_that_loaded_the_definitions():
    from dfp_assets.definitions import defs

    preload = {"forkserver": {"preload_modules": ["dfp_assets.definitions"]}}
    for mode, expected in (("multiprocess", {"start_method": preload}), ("in_process", {})):
        assert default_mode_config(mode, ["dfp_assets.definitions"]) == expected
    assert default_mode_config("multiprocess") == {}  # spawn, Dagster's default
    job = defs.resolve_job_def("apply_comment_changes")
    default = job.executor_def.config_schema.as_field().default_value
    mode = next(iter(default))
    assert default[mode] == default_mode_config(mode, ["dfp_assets.definitions"])


def test_a_run_config_still_chooses():
    assert (
        _worker_processes(in_process_default, {"execution": {"config": {"multiprocess": {}}}}) == 2
    )
    assert (
        _worker_processes(multiprocess_default, {"execution": {"config": {"in_process": {}}}}) == 0
    )
