"""The warm worker: a run's heavy imports in a spawned process from the run's start, and the
steps' heavy functions run there (dfp.warm_imports)."""

import os

import pytest

from dfp.warm_imports import (
    MAX_WORKERS,
    WARM_IMPORTS_TAG,
    parse_modules,
    preload_groups,
    run_warm,
    start_warm_workers,
    stop_warm_workers,
)
from dfp_assets.definitions import defs
from dfp_assets.platform.dagster_private import InProcessExecutor, RetryMode
from dfp_assets.platform.wap_executor import WriteAuditPublishExecutor
from dfp_resources.lakefs import LakeFSResource


@pytest.fixture(autouse=True)
def _no_worker_left():
    yield
    stop_warm_workers()


def test_tag_values_give_each_module_once_in_order():
    assert parse_modules(["b, a", None, "", "a,c", " b "]) == ["b", "a", "c"]


def test_the_cdc_job_warms_great_expectations_then_dbt():
    job = defs.resolve_job_def("apply_comment_changes")
    groups = [n.tags.get(WARM_IMPORTS_TAG) for n in job.nodes_in_topological_order]
    groups = [g for g in groups if g]
    # its check step runs before dbt's; each has a worker of its own
    assert groups[0] == "dfp.toxic.expectations:import_great_expectations"
    assert {"dbt.cli.main", "dbt.adapters.postgres", "dagster_dbt"} <= set(
        parse_modules(groups[1:])
    )


def _probe(path: str) -> tuple[int, bool]:
    """Runs in the worker: its pid, and whether it imported the probe and called its warm()."""
    import sys

    probe = sys.modules.get("dfp_warm_probe_ok")
    return os.getpid(), probe is not None and probe.VALUE == 43 and path in sys.path


def test_functions_run_in_the_worker_that_imported_the_modules(tmp_path, monkeypatch):
    (tmp_path / "dfp_warm_probe_ok.py").write_text(
        "VALUE = 42\ndef warm():\n    global VALUE\n    VALUE = 43\n"
    )
    (tmp_path / "dfp_warm_probe_bad.py").write_text("raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # spawn hands the worker this sys.path
    group = "dfp_warm_probe_bad,dfp_warm_probe_ok:warm"
    (worker,) = start_warm_workers([group, None, group])
    pid, imported = run_warm(group, _probe, str(tmp_path))
    assert pid != os.getpid() and imported
    worker.imported.result(timeout=120)
    report = worker.report()
    assert report["pid"] == pid
    assert set(report["seconds"]) == {"dfp_warm_probe_bad", "dfp_warm_probe_ok:warm"}
    assert "broken on purpose" in report["failed"]["dfp_warm_probe_bad"]


def test_without_a_worker_functions_run_here():
    assert start_warm_workers([None, ""]) == []
    assert run_warm("json", _probe, "/nowhere")[0] == os.getpid()


def test_a_dead_worker_falls_back_to_this_process(monkeypatch):
    monkeypatch.setenv("DFP_WARM_TEST_PARENT", str(os.getpid()))
    start_warm_workers(["json"])
    assert run_warm("json", os.getpid) != os.getpid()
    assert run_warm("csv", os.getpid) == os.getpid()  # no worker of that group
    with pytest.raises(SystemExit):
        # it kills the worker; the fallback runs it here, where it raises SystemExit
        run_warm("json", _exit_here_instead)
    assert run_warm("json", os.getpid) == os.getpid()  # no worker any more


def _exit_here_instead() -> None:
    if os.environ.get("DFP_WARM_TEST_PARENT") == str(os.getpid()):
        raise SystemExit(0)
    os._exit(3)


class _Step:
    def __init__(self, tags):
        self.tags = tags


class _Plan:
    def get_steps_to_execute_in_topo_order(self):
        return [_Step({WARM_IMPORTS_TAG: "json"}), _Step(None), _Step({WARM_IMPORTS_TAG: "csv"})]


class _StepProcessExecutor(InProcessExecutor.__mro__[1]):  # a dg.Executor, as multiprocess
    retries = RetryMode.DISABLED

    def execute(self, plan_context, execution_plan):
        raise NotImplementedError


def test_only_runs_whose_steps_share_a_process_start_a_worker():
    lakefs = LakeFSResource(endpoint="http://127.0.0.1:1", access_key_id="k", secret_access_key="s")
    shared = WriteAuditPublishExecutor(InProcessExecutor(RetryMode.DISABLED), lakefs)
    workers = shared._warm_imports(_Plan())
    assert [w.modules for w in workers] == [["json"], ["csv"]]  # one per step, in parallel
    own = WriteAuditPublishExecutor(_StepProcessExecutor(), lakefs)
    assert own._warm_imports(_Plan()) == []


def test_groups_beyond_the_limit_share_the_last_worker():
    workers = start_warm_workers(["json", "csv", "tabnanny"])
    assert len(workers) == MAX_WORKERS == 2
    base = os.nice(0)
    # below this process, the later-needed one lower still
    assert [w.imported.result(timeout=120)["nice"] for w in workers] == [base + 5, base + 10]
    assert run_warm("tabnanny", os.getpid) == run_warm("csv", os.getpid) != os.getpid()


def test_groups_preloaded_here_start_no_worker_and_failed_ones_still_do(monkeypatch):
    # What the warm run launcher's server does before it forks runs.
    monkeypatch.setattr("dfp.warm_imports._preloaded", set())
    report = preload_groups(["json", "no_such_module_here", None])
    assert "no_such_module_here" in report["failed"]
    workers = start_warm_workers(["json", "no_such_module_here"])
    assert [w.modules for w in workers] == [["no_such_module_here"]]
    assert run_warm("json", os.getpid) == os.getpid()  # no worker: runs here


_LEAN_GE_PROBE = """
import sys
import pandas as pd
from dfp.toxic.expectations import import_great_expectations, validate_staging
gx = import_great_expectations()
probed = ("pyspark", "boto3", "scipy.stats._stats_py", "altair.vegalite")
loaded = {m: m in sys.modules for m in probed}
frame = pd.DataFrame({"id": ["0f8fad5b-d9cb-469f-a165-70867728950e", "nope"], "labels": [0, 2],
                      "input_ids": ["{101,102}", "{1.5}"], "attention_mask": ["{1,1}", "{1,1}"]})
failed = sorted(r.name for r in validate_staging(frame).failures())
import pyspark, boto3  # still importable for everything else
print(gx.__name__, loaded, failed)
"""


def test_great_expectations_imports_without_its_unused_integrations_and_still_validates():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _LEAN_GE_PROBE], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("great_expectations {'pyspark': False, 'boto3': False")
    assert "'scipy.stats._stats_py': False, 'altair.vegalite': False}" in line
    assert line.endswith("['id_uuid_shaped', 'input_ids_integer_array', 'labels_in_0_1']")
