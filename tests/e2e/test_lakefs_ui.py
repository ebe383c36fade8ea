"""lakeFS's web UI and Dagster's, linked both ways, in a real (headless) browser.

A real publish on `main` (a small synthetic `ingest_kronodroid` run, executed in this process
on the instance that a real `dagster dev` serves, with DFP_DAGSTER_URL pointing at it); then in
the browser: log in to lakeFS's UI, the repository's branches, the publish commit with its
metadata, its "Open Dagster UI" button followed to that run's page in Dagster, and the lakeFS
links the run's materialization carries (its lineage commit, the raw objects it wrote).

Debian's /usr/bin/chromium driven by playwright-core (tests/e2e/node_modules) through
lakefs_ui_check.mjs, on 127.0.0.1 only. Screenshots, the summary and the `dagster dev` log are
kept under test-artifacts/e2e/lakefs-ui/.
"""

import json
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from dfp.lake import wap
from dfp.settings import reload_settings
from tests.e2e.test_ui import ARTIFACTS as E2E_ARTIFACTS
from tests.e2e.test_ui import E2E_DIR, _missing_browser_deps
from tests.integration import dagster_processes as procs
from tests.integration.jobs import materialize_raw

UI_CHECK = E2E_DIR / "lakefs_ui_check.mjs"
ARTIFACTS = E2E_ARTIFACTS.parent / "lakefs-ui"
JOB = "ingest_kronodroid"
SMALL = {"source": "synthetic", "synthetic_scale": 0.03, "synthetic_seed": 11}
UI_TIMEOUT_S = 120
SCREENSHOTS = (
    "lakefs-login",
    "lakefs-repositories",
    "lakefs-branches",
    "lakefs-commit",
    "dagster-run",
    "lakefs-lakefs-commit-url",
    "lakefs-lakefs-objects-url",
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_missing_browser_deps() is not None, reason=str(_missing_browser_deps())),
]


def _run_check(args: dict) -> dict:
    done = subprocess.run(
        ["node", str(UI_CHECK), json.dumps(args)],
        cwd=E2E_DIR,
        capture_output=True,
        text=True,
        timeout=6 * UI_TIMEOUT_S,
    )
    (ARTIFACTS / "lakefs_ui_check.stderr.log").write_text(done.stderr)
    lines = done.stdout.strip().splitlines()
    assert lines, f"lakefs_ui_check.mjs printed nothing (exit {done.returncode}): {done.stderr}"
    summary = json.loads(lines[-1])
    (ARTIFACTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    assert done.returncode == 0, f"browser failed: {summary['errors']}\n{done.stderr[-3000:]}"
    return summary


def test_publish_commit_opens_its_dagster_run(lakefs, monkeypatch, record_property):
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # no stale screenshots from an earlier run
    ARTIFACTS.mkdir(parents=True)
    # No automation: the publish to main must not start downstream runs in the daemon.
    overrides = {"auto_materialize": {"enabled": False, "use_sensors": False}}
    with (
        dg.instance_for_test(overrides=overrides) as instance,
        procs.dagster_dev(instance.root_directory, ARTIFACTS) as dagster_url,
    ):
        monkeypatch.setenv("DFP_DAGSTER_URL", dagster_url)
        reload_settings()
        result = materialize_raw(instance, "main", SMALL)
        assert result.success
        run_id = result.run_id
        [publish] = [
            c
            for c in lakefs.log("main", 20)
            if c.metadata.get("dagster_run_id") == run_id and len(c.parents) == 2
        ]
        assert publish.metadata[wap.LAKEFS_UI_LINK_KEY] == f"{dagster_url}/runs/{run_id}"
        [mat] = result.asset_materializations_for_node("kronodroid_raw")
        raw_commit = mat.metadata["lakefs_commit"].value
        links = {k: mat.metadata[k].value for k in ("lakefs_commit_url", "lakefs_objects_url")}
        summary = _run_check(
            {
                "lakefsUrl": lakefs.settings.endpoint.rstrip("/"),
                "accessKeyId": lakefs.settings.access_key_id,
                "secretAccessKey": lakefs.settings.secret_access_key,
                "repository": lakefs.repository,
                "commitId": publish.id,
                "runId": run_id,
                "jobName": JOB,
                "materializationLinks": links,
                "materializationExpect": {
                    # The commit page shows the id's first 12 characters and the message.
                    "lakefs_commit_url": [raw_commit[:12], "kronodroid_raw"],
                    "lakefs_objects_url": ["real_device", "emulator"],
                },
                "outDir": str(ARTIFACTS),
                "timeoutMs": UI_TIMEOUT_S * 1000,
            }
        )

    pages = summary["pages"]
    record_property("screenshots", " ".join(p["screenshot"] for p in pages.values()))
    where = f"summary {ARTIFACTS / 'summary.json'}; errors: {summary['errors']}"
    assert not summary["errors"], where
    assert all(Path(pages[name]["screenshot"]).is_file() for name in SCREENSHOTS), where
    assert "main" in pages["lakefs-branches"]["branches"], where
    commit = pages["lakefs-commit"]
    assert commit["metadata"].get("dagster_run_id") == run_id, where
    assert commit["metadata"].get(wap.LAKEFS_UI_LINK_KEY) == f"{dagster_url}/runs/{run_id}", where
    run_page = pages["dagster-run"]
    assert run_page["url"].startswith(f"{dagster_url}/runs/{run_id}"), where
    assert run_page["runShown"] and run_page["logsShown"], where
    assert pages["lakefs-lakefs-commit-url"]["shown"], where
    assert pages["lakefs-lakefs-objects-url"]["shown"], where
    # Requests off loopback were aborted (listed in summary.json, "blocked").
