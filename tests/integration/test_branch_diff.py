"""`dfp diff main exp` and `branch_comparison` on a branch whose raw rows the test changed:
the exact added/removed/changed counts it made, and the two models' metric deltas as MLflow
recorded them."""

import hashlib
import os
import re
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dfp import tracking
from dfp.cli import main
from dfp.kronodroid.schema import SYSCALL_COLUMNS, Release
from dfp.kronodroid.synthetic import write_release_files
from tests.integration.jobs import _run_partition, build_staging, train_model

pytestmark = pytest.mark.integration

FAST = {"epochs": 3, "f1_floor": 0.5}
ADDED, REMOVED, CHANGED = 11, 7, 5
CHANGED_COLUMN = SYSCALL_COLUMNS[0]


def _exp_release(table: pa.Table) -> pa.Table:
    """`table` with REMOVED rows dropped, CHANGED rows' CHANGED_COLUMN raised by one and
    ADDED copies of other rows under new sha256 values (all among apps that occur once)."""
    counts = pc.value_counts(table["sha256"])
    once = {v["values"].as_py() for v in counts if v["counts"].as_py() == 1}
    rows = [i for i, s in enumerate(table["sha256"].to_pylist()) if s in once]
    removed, changed, copied = (
        rows[:REMOVED],
        rows[REMOVED : REMOVED + CHANGED],
        rows[REMOVED + CHANGED : REMOVED + CHANGED + ADDED],
    )
    column = table[CHANGED_COLUMN].to_pylist()
    for i in changed:
        column[i] = (column[i] or 0) + 1
    index = table.schema.get_field_index(CHANGED_COLUMN)
    edited = table.set_column(
        index, CHANGED_COLUMN, pa.array(column, table.schema.field(CHANGED_COLUMN).type)
    )
    keep = [i for i in range(table.num_rows) if i not in set(removed)]
    extra = edited.take(pa.array(copied))
    fresh = [hashlib.sha256(f"exp-{n}".encode()).hexdigest().upper() for n in range(ADDED)]
    sha_index = extra.schema.get_field_index("sha256")
    extra = extra.set_column(
        sha_index, "sha256", pa.array(fresh, extra.schema.field("sha256").type)
    )
    return pa.concat_tables([edited.take(pa.array(keep)), extra])


def _model_run(result) -> str:
    (mat,) = [
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key.to_user_string() == "malware_model"
    ]
    return mat.metadata["mlflow_run_id"].value


def _row(output: str, name: str) -> list[str]:
    line = next(ln for ln in output.splitlines() if ln.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_diff_reports_the_rows_the_test_changed_and_the_metric_deltas(lakefs, instance, tmp_path):
    main_dir, exp_dir = tmp_path / "main", tmp_path / "exp"
    files = write_release_files(main_dir, scale=0.03, seed=21, fmt="parquet")
    exp_dir.mkdir()
    for release, (path,) in files.items():
        if release == Release.REAL_DEVICE:
            pq.write_table(_exp_release(pq.read_table(path)), exp_dir / path.name)
        else:
            shutil.copy(path, exp_dir / path.name)

    assert build_staging(instance, "main", {"source": "local", "local_dir": str(main_dir)}).success
    main_model = train_model(instance, "main", FAST)
    assert main_model.success
    lakefs.create_branch("exp", "main")
    assert build_staging(instance, "exp", {"source": "local", "local_dir": str(exp_dir)}).success
    exp_model = train_model(instance, "exp", FAST)
    assert exp_model.success

    cli = CliRunner().invoke(main, ["diff", "main", "exp"])
    assert cli.exit_code == 0, cli.output
    out = cli.output
    # columns: table, rows main, rows exp, added, removed, changed, most changed columns
    real = _row(out, f"raw {Release.REAL_DEVICE}")
    assert real[3:6] == [str(ADDED), str(REMOVED), str(CHANGED)], real
    assert real[6].startswith(f"{CHANGED_COLUMN} ({CHANGED})"), real
    rows_main = pq.read_metadata(files[Release.REAL_DEVICE][0]).num_rows
    assert real[1:3] == [f"{rows_main:,}", f"{rows_main + ADDED - REMOVED:,}"]
    assert _row(out, f"raw {Release.EMULATOR}")[3:6] == ["0", "0", "0"]
    # The mart: one row per app and capture, so the same changes (read from its snapshots).
    assert _row(out, "marts.mart_app_features")[3:6] == [str(ADDED), str(REMOVED), str(CHANGED)]
    assert "no device benchmarks on either branch" in out

    # Metric deltas, both splits, against what MLflow recorded for each branch's model.
    tracker = tracking.Tracker(os.environ["MLFLOW_TRACKING_URI"])
    run_main, run_exp = _model_run(main_model), _model_run(exp_model)
    assert run_main != run_exp and run_main in out and run_exp in out
    metrics_main, metrics_exp = tracker.read(run_main).metrics, tracker.read(run_exp).metrics
    for split in ("temporal", "random"):
        for metric in ("f1", "precision", "recall", "roc_auc"):
            a, b = metrics_main[f"{split}_{metric}"], metrics_exp[f"{split}_{metric}"]
            rows = [
                [c.strip() for c in ln.strip("|").split("|")]
                for ln in out.splitlines()
                if ln.startswith(f"| model {split} | {metric} |")
            ]
            assert len(rows) == 1, (split, metric)
            assert rows[0][2:5] == [f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}"], rows[0]

    # The asset shows the same table and a plot in the UI.
    from dfp_assets.definitions import comparison_job

    result = _run_partition(comparison_job, instance, "exp")
    assert result.success
    (mat,) = [
        e.event_specific_data.materialization for e in result.get_asset_materialization_events()
    ]
    assert mat.metadata["compared_with"].value == "main"
    shown = mat.metadata["rows"].value
    assert shown[f"raw {Release.REAL_DEVICE}"] == {
        "added": ADDED,
        "removed": REMOVED,
        "changed": CHANGED,
    }
    assert re.search(
        r"data:image/png;base64,[A-Za-z0-9+/]{200,}", mat.metadata["comparison_plot"].value
    )
    assert _row(mat.metadata["comparison"].value, "marts.mart_app_features")[3:6] == [
        str(ADDED),
        str(REMOVED),
        str(CHANGED),
    ]
    deltas = mat.metadata["metric_deltas"].value
    assert deltas["model temporal f1"] == pytest.approx(
        metrics_exp["temporal_f1"] - metrics_main["temporal_f1"]
    )
