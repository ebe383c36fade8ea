"""The UI that `dagster dev` serves, in a real (headless) browser: every asset of the
`Definitions` is shown in its group's lineage graph, partitioned by lakefs_branch, and an asset's
partitions view shows the lakeFS branches.

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


def _expected_assets() -> dict[str, list[str]]:
    """Asset names as the graph shows them (a key's last part), by asset group."""
    from dfp_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    by_group: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        by_group.setdefault(graph.get(key).group_name, set()).add(key.path[-1])
    return {group: sorted(names) for group, names in sorted(by_group.items())}


def _run_ui_check(
    base_url: str, assets_by_group: dict[str, list[str]], partitions: list[str]
) -> dict:
    args = {
        "baseUrl": base_url,
        "outDir": str(ARTIFACTS),
        "assetsByGroup": assets_by_group,
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
        # One bounded wait per page: the overview, each group, the partitions view.
        timeout=(len(assets_by_group) + 3) * UI_TIMEOUT_S,
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
    assets_by_group = _expected_assets()

    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # no stale screenshots from an earlier run
    ARTIFACTS.mkdir(parents=True)
    with procs.dagster_dev(instance.root_directory, ARTIFACTS) as url:
        summary = _run_ui_check(url, assets_by_group, branches)

    graph, partitions, groups = summary["graph"], summary["partitions"], summary["groups"]
    record_property("screenshots", f"{graph.get('screenshot')} {partitions.get('screenshot')}")
    where = (
        f"screenshots in {ARTIFACTS} (summary.json, dagster-dev.log beside them); "
        f"errors: {summary['errors']}"
    )
    assert Path(graph["screenshot"]).is_file(), where
    assert Path(partitions["screenshot"]).is_file(), where
    assert sorted(groups) == sorted(assets_by_group), f"groups visited: {sorted(groups)}; {where}"
    count = f"{len(branches)} partitions"
    for group, expected in assets_by_group.items():
        shown = groups[group]
        assert Path(shown["screenshot"]).is_file(), where
        # External (upstream/downstream) assets show as links, not nodes: only the group's own.
        nodes = [node for node in shown["nodes"] if node["name"] in expected]
        missing = sorted(set(expected) - {node["name"] for node in nodes})
        assert not missing, f"group {group}: assets missing from its graph: {missing}; {where}"
        # Every node is partitioned by lakefs_branch: a "Partitions" row and the branch count.
        unpartitioned = [node["name"] for node in nodes if not node["partitions"]]
        assert not unpartitioned, (
            f"group {group}: nodes without partitions: {unpartitioned}; {where}"
        )
        miscounted = [node["name"] for node in nodes if count not in node["text"]]
        assert not miscounted, f"group {group}: nodes not showing '{count}': {miscounted}; {where}"
    assert set(branches) <= set(partitions["keys"]), (
        f"partitions shown for {'/'.join(PARTITION_ASSET)}: {partitions['keys']}; {where}"
    )
    # Requests off loopback were aborted by ui_check.mjs (listed in summary.json, "blocked").
