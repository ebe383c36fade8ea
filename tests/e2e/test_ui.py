"""The UI that `dagster dev` serves, in a real (headless) browser: the asset graph shows every
asset of the `Definitions`, and an asset's partitions view shows the lakeFS branches.

Debian's /usr/bin/chromium is driven by playwright-core (tests/e2e/node_modules, installed by
scripts/install-browser-test-deps.sh) through ui_check.mjs, on 127.0.0.1 only. Screenshots and
the `dagster dev` log are kept under test-artifacts/e2e/dagster-ui/.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dfp.settings import PROJECT_ROOT
from tests.integration import dagster_processes as procs

E2E_DIR = Path(__file__).parent
UI_CHECK = E2E_DIR / "ui_check.mjs"
# Its own folder: test_lakefs_ui keeps its screenshots beside it (both may run at once).
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "e2e" / "dagster-ui"
CHROMIUM = Path(os.environ.get("DFP_CHROMIUM", "/usr/bin/chromium"))
LOCATION = "dfp"  # workspace.yaml's location_name
PARTITION_ASSET = ["kronodroid_raw"]
BRANCH = "exp-ui"
UI_TIMEOUT_S = 120


def _missing_browser_deps() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is absent (bash scripts/install-browser-test-deps.sh installs it)"
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (E2E_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        return (
            "tests/e2e/node_modules/playwright-core is absent "
            "(bash scripts/install-browser-test-deps.sh runs `npm ci --prefix tests/e2e`)"
        )
    return None


pytestmark = [
    pytest.mark.e2e,
    # Evaluated before any fixture: no lakeFS is started for a skipped test.
    pytest.mark.skipif(_missing_browser_deps() is not None, reason=str(_missing_browser_deps())),
]


def _expected_assets() -> tuple[list[str], list[str]]:
    """Asset names as the graph shows them (a key's last part) and the asset groups."""
    from dfp_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    return (
        sorted({key.path[-1] for key in keys}),
        sorted({graph.get(key).group_name for key in keys}),
    )


def _run_ui_check(
    base_url: str, assets: list[str], groups: list[str], partitions: list[str]
) -> dict:
    args = {
        "baseUrl": base_url,
        "outDir": str(ARTIFACTS),
        "assets": assets,
        "groups": groups,
        "location": LOCATION,
        "partitionAsset": PARTITION_ASSET,
        "partitions": partitions,
        "timeoutMs": UI_TIMEOUT_S * 1000,
    }
    done = subprocess.run(
        ["node", str(UI_CHECK), json.dumps(args)],
        cwd=E2E_DIR,
        capture_output=True,
        text=True,
        timeout=4 * UI_TIMEOUT_S,
    )
    (ARTIFACTS / "ui_check.stderr.log").write_text(done.stderr)
    lines = done.stdout.strip().splitlines()
    assert lines, f"ui_check.mjs printed nothing (exit {done.returncode}): {done.stderr[-3000:]}"
    summary = json.loads(lines[-1])
    (ARTIFACTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    assert done.returncode == 0, f"browser failed: {summary['errors']}\n{done.stderr[-3000:]}"
    return summary


def test_dagster_dev_ui_shows_every_asset_and_the_branch_partitions(
    lakefs, instance, record_property
):
    branches = ["main", BRANCH]
    lakefs.create_branch(BRANCH, "main")
    assert set(branches) <= set(lakefs.list_branches())
    instance.add_dynamic_partitions("lakefs_branch", branches)
    assets, groups = _expected_assets()

    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # no stale screenshots from an earlier run
    ARTIFACTS.mkdir(parents=True)
    with procs.dagster_dev(instance.root_directory, ARTIFACTS) as url:
        summary = _run_ui_check(url, assets, groups, branches)

    graph, partitions = summary["graph"], summary["partitions"]
    record_property("screenshots", f"{graph.get('screenshot')} {partitions.get('screenshot')}")
    where = (
        f"screenshots: {graph.get('screenshot')}, {partitions.get('screenshot')} "
        f"(summary {ARTIFACTS / 'summary.json'}, log {ARTIFACTS / 'dagster-dev.log'}); "
        f"errors: {summary['errors']}"
    )
    assert Path(graph["screenshot"]).is_file(), where
    assert Path(partitions["screenshot"]).is_file(), where
    missing = sorted(set(assets) - set(graph["assetNames"]))
    assert not missing, (
        f"assets missing from the graph: {missing}; shown {graph['assetNames']}; {where}"
    )
    # Every node is partitioned by lakefs_branch: a "Partitions" row and the branch count.
    unpartitioned = [node["name"] for node in graph["nodes"] if not node["partitions"]]
    assert not unpartitioned, f"nodes without a partitions row: {unpartitioned}; {where}"
    count = f"{len(branches)} partitions"
    miscounted = [node["name"] for node in graph["nodes"] if count not in node["text"]]
    assert not miscounted, f"nodes not showing '{count}': {miscounted}; {where}"
    assert set(branches) <= set(partitions["keys"]), (
        f"partitions shown for {'/'.join(PARTITION_ASSET)}: {partitions['keys']}; {where}"
    )
    # Requests off loopback were aborted by ui_check.mjs (listed in summary.json, "blocked").
