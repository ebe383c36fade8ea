"""Features → training set → malware_model through the real Definitions (lakeFS, Feast,
MLflow), lineage, reproduction and the blocking quality gate."""

import io
import os
import re
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis
from click.testing import CliRunner

from dfp import tracking
from dfp.cli import main
from dfp.kronodroid import online_publish
from dfp.kronodroid.features import FEATURE_GROUPS, online_features
from dfp.kronodroid.model import load_model
from dfp.kronodroid.reproduce import reproduce
from dfp.kronodroid.training import TRAINING_SET_OBJECT
from dfp.lake import outages, wap
from dfp.lake.iceberg import BranchTables
from dfp_assets.kronodroid.model import F1_CHECK, MODEL_OBJECT
from dfp_resources.feast import FeastResource
from tests.integration.jobs import build_staging, export_models, run_cleanup_sensor, train_model

pytestmark = pytest.mark.integration

DATA = {"source": "synthetic", "synthetic_scale": 0.03, "synthetic_seed": 21}
FAST = {"epochs": 3, "f1_floor": 0.5}
MART = ("marts", "mart_app_features")


def _materializations(result) -> dict:
    return {
        m.asset_key.to_user_string(): m.metadata
        for e in result.get_asset_materialization_events()
        for m in [e.event_specific_data.materialization]
    }


def _expected_vectors(mart, row: int) -> dict[str, list[float]]:
    return {
        group: [float(np.float32(mart[c][row].as_py() or 0)) for c in columns]
        for group, columns in FEATURE_GROUPS.items()
    }


@pytest.fixture
def tables(lakefs) -> BranchTables:
    return BranchTables(lakefs, os.environ["DFP_ICEBERG_CATALOG_URI"])


def test_model_pipeline_lineage_online_and_reproduce(lakefs, instance, tables):
    assert build_staging(instance, "main", DATA).success
    result = train_model(instance, "main", FAST)
    assert result.success
    mats = _materializations(result)
    run_id = mats["malware_model"]["mlflow_run_id"].value

    # MLflow recorded metrics for both splits and the run's lineage.
    tracker = tracking.Tracker(os.environ["MLFLOW_TRACKING_URI"])
    recorded = tracker.read(run_id)
    assert {"temporal_f1", "random_f1", "temporal_roc_auc", "random_tp"} <= set(recorded.metrics)
    tags = recorded.tags
    assert tags[tracking.TAG_BRANCH] == "main"
    assert tags[tracking.TAG_REPOSITORY] == lakefs.repository
    assert tags[tracking.TAG_COMMIT] == mats["training_set"]["lakefs_commit"].value
    assert tags[tracking.TAG_FEATURE_SERVICE] == "malware_model"
    assert tags[tracking.TAG_REGISTRY_VERSION].startswith("sha256:")
    mart = tables.load("main", *MART)
    assert (
        f'"marts.mart_app_features": {mart.current_snapshot().snapshot_id}'
        in (tags[tracking.TAG_SNAPSHOTS])
    )
    assert tags[tracking.TAG_DAGSTER_RUN] == result.run_id
    assert tags[tracking.TAG_QUALITY_GATE] == "passed"

    _assert_honest_report(lakefs, mats["malware_model"], recorded)

    # The model and the training set were published to main by the run's merge.
    model = load_model_bytes(lakefs.read("main", MODEL_OBJECT))
    assert model.n_features == sum(len(c) for c in FEATURE_GROUPS.values())
    assert lakefs.read("main", TRAINING_SET_OBJECT)
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]

    # Online features (SQLite) for a known app equal the mart's values.
    mart_rows = mart.scan().to_arrow()
    row = 5
    key = {"sha256": mart_rows["sha256"][row].as_py(), "capture": mart_rows["capture"][row].as_py()}
    store = FeastResource(home=os.environ["DFP_FEAST_HOME"]).store(lakefs, "main")
    online = online_features(store, [key])
    for group, values in _expected_vectors(mart_rows, row).items():
        assert online[group][0] == values, group

    # dfp reproduce: same commit, same training set, same metrics.
    again = reproduce(
        run_id, client=lakefs, catalog_uri=tables.catalog_uri, tracker=tracker, tolerance=1e-6
    )
    assert again.commit == tags[tracking.TAG_COMMIT]
    assert again.training_set_digest == tags[tracking.TAG_TRAINING_SET_DIGEST]
    assert not again.differences, again.differences
    assert again.identical
    # The command line agrees (exit 0 only when everything matches).
    cli = CliRunner().invoke(main, ["reproduce", run_id])
    assert cli.exit_code == 0, cli.output
    assert tags[tracking.TAG_COMMIT] in cli.output and "reproduced: same commit" in cli.output
    # One progress line per stage, in order, each with the seconds since the start.
    stages = [line for line in cli.output.splitlines() if re.match(r"\[ *\d+\.\ds\] ", line)]
    commit = tags[tracking.TAG_COMMIT][:12]
    epochs = FAST["epochs"]
    expected = [
        rf"read MLflow run {run_id}: lakeFS commit {commit}, mart snapshot \d+, \d+ metrics, "
        rf"{epochs} epochs",
        rf"read marts\.mart_app_features at commit {commit} snapshot \d+: \d+ rows",
        r"point-in-time join: \d+ rows, training set [0-9a-f]{12} \(same as the recorded one\)",
        *[
            rf"training \({split} split\): epoch {n}/{epochs} loss \d+\.\d{{4}} \d+\.\ds"
            for split in ("temporal", "random")
            for n in range(1, epochs + 1)
        ],
        r"compared \d+ metrics with the run's: all within \(tolerance 1e-06\)",
    ]
    assert len(stages) == len(expected), cli.output
    for line, pattern in zip(stages, expected, strict=True):
        assert re.fullmatch(rf"\[ *\d+\.\ds\] {pattern}", line), (line, pattern)
    rows = [int(m[1]) for m in (re.search(r": (\d+) rows", line) for line in stages[1:3])]
    assert rows[0] == rows[1] > 0  # the join kept every mart row


def _assert_honest_report(lakefs, metadata, recorded) -> None:
    """Class counts and test dates per split, both models' metrics side by side, checked
    against the published training set and the MLflow run."""
    frame = pq.read_table(io.BytesIO(lakefs.read("main", TRAINING_SET_OBJECT))).to_pandas()
    labels = frame["label"].to_numpy()
    splits = metadata["splits"].value
    assert set(splits) == {"temporal", "random"}
    for name, split in splits.items():
        train, test = split["train"], split["test"]
        # Both sides together are the whole training set, class by class.
        assert train["benign"] + test["benign"] == int((labels == 0).sum()), name
        assert train["malware"] + test["malware"] == int((labels == 1).sum()), name
        assert train["benign"] + train["malware"] == metadata["rows"].value[f"{name}_train"]
        assert test["malware"] == recorded.metrics[f"{name}_n_positive"]
    # The temporal test side is every app dated on or after its first test date.
    temporal = splits["temporal"]
    first, last = (pd.Timestamp(d, tz="UTC") for d in temporal["test_dates"])
    on_test = frame["event_timestamp"] >= first
    assert temporal["test"]["benign"] + temporal["test"]["malware"] == int(on_test.sum())
    assert temporal["test"]["malware"] == int(frame.loc[on_test, "label"].sum())
    assert frame["event_timestamp"].max() == last
    assert pd.Timestamp(temporal["train_dates"][1], tz="UTC") < first

    # The markdown shows the counts and both models; the share warnings follow the counts.
    markdown = metadata["metrics"].value
    for name, split in splits.items():
        for side in ("train", "test"):
            counts = split[side]
            n = counts["benign"] + counts["malware"]
            assert f"| {name} | {side} | {n} | {counts['benign']} | {counts['malware']} |" in (
                markdown
            )
    header = "| metric | MLP (temporal) | baseline (temporal) | MLP (random) | baseline (random) |"
    assert header in markdown
    assert "HistGradientBoostingClassifier" in markdown
    warnings = metadata["share_warnings"].value
    for name, split in splits.items():
        shares = [
            split[s]["malware"] / (split[s]["benign"] + split[s]["malware"])
            for s in ("train", "test")
        ]
        ratio = max(shares) / min(shares)
        assert any(w.startswith(f"{name} split:") for w in warnings) == (ratio > 1.5), name
    assert markdown.count("**Warning:**") == len(warnings)
    assert recorded.tags["dfp.report.share_warnings"] == ("\n".join(warnings) or "none")

    # Baseline metrics beside the MLP's, in the metadata and in MLflow.
    f1_cells = []
    for split in ("temporal", "random"):
        for name in ("f1", "precision", "recall", "roc_auc", "pr_auc", "mcc"):
            low = -1.0 if name == "mcc" else 0.0
            assert low <= recorded.metrics[f"baseline_{split}_{name}"] <= 1.0, (split, name)
            assert low <= recorded.metrics[f"{split}_{name}"] <= 1.0, (split, name)
        baseline = metadata["evaluations"].value["baseline"][split]
        assert baseline["f1"] == pytest.approx(recorded.metrics[f"baseline_{split}_f1"])
        assert metadata[f"baseline_{split}_f1"].value == pytest.approx(baseline["f1"])
        f1_cells += [f"{metadata[f'{split}_f1'].value:.4f}", f"{baseline['f1']:.4f}"]
    assert f"| f1 | {' | '.join(f1_cells)} |" in markdown
    assert metadata["temporal_pr_auc"].value == pytest.approx(recorded.metrics["temporal_pr_auc"])
    assert metadata["temporal_mcc"].value == pytest.approx(recorded.metrics["temporal_mcc"])


def load_model_bytes(data: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        path.write_bytes(data)
        return load_model(path)


def test_model_below_floor_blocks_and_publishes_nothing(lakefs, instance, tables):
    assert build_staging(instance, "main", DATA).success
    head = lakefs.head("main")
    result = train_model(instance, "main", {**FAST, "f1_floor": 1.01})  # unreachable
    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks[F1_CHECK].passed is False
    assert lakefs.head("main") == head
    for path in (MODEL_OBJECT, TRAINING_SET_OBJECT):
        with pytest.raises(Exception, match="(?i)not found|404"):
            lakefs.read("main", path)
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]
    # Its online project (SQLite) was never served and is gone; main has no pointer.
    written = _materializations(result)["feast_online"]["feast_project"].value
    assert online_publish.run_key_of(written) is not None
    online = FeastResource(home=os.environ["DFP_FEAST_HOME"]).online_settings()
    assert online_publish.list_projects(online, lakefs.repository) == []
    assert online_publish.read_pointer(lakefs, "main") is None
    # The rejected run is still visible in MLflow, marked as failed.
    run_id = _materializations(result)["malware_model"]["mlflow_run_id"].value
    tracker = tracking.Tracker(os.environ["MLFLOW_TRACKING_URI"])
    assert tracker.read(run_id).tags[tracking.TAG_QUALITY_GATE] == "failed"


def _step_errors(instance, run_id: str) -> str:
    return "\n".join(
        e.dagster_event.step_failure_data.error.to_string()
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.is_step_failure
    )


def test_online_features_are_per_branch_on_redis(lakefs, instance, tables, redis_url, monkeypatch):
    """Per-branch online rows on Redis, published with the run: a run Redis is down for, or
    whose blocking check fails after feast_online, changes no served row; the rerun serves
    the branch's new rows only, and the cleanup sweeps online projects nobody serves."""
    monkeypatch.setenv("DFP_FEAST_ONLINE", "redis")
    monkeypatch.setenv("DFP_REDIS_URL", redis_url)
    monkeypatch.setattr(outages, "BACKOFF_S", 0.01)  # a dead Redis fails in seconds
    assert build_staging(instance, "main", DATA).success
    assert train_model(instance, "main", FAST).success
    lakefs.create_branch("exp-1", "main")
    # exp-1 gets different raw data (another seed): new apps, rebuilt features.
    assert build_staging(instance, "exp-1", {**DATA, "synthetic_seed": 22}).success

    feast = FeastResource(home=os.environ["DFP_FEAST_HOME"], online="redis", redis_url=redis_url)
    exp_rows = tables.load("exp-1", *MART).scan().to_arrow()
    main_rows = tables.load("main", *MART).scan().to_arrow()
    exp_ids = set(exp_rows["app_capture_id"].to_pylist())
    main_ids = set(main_rows["app_capture_id"].to_pylist())
    row = next(i for i, v in enumerate(exp_rows["app_capture_id"].to_pylist()) if v not in main_ids)
    gone = next(
        i for i, v in enumerate(main_rows["app_capture_id"].to_pylist()) if v not in exp_ids
    )
    key = {"sha256": exp_rows["sha256"][row].as_py(), "capture": exp_rows["capture"][row].as_py()}
    deleted = {k: main_rows[k][gone].as_py() for k in ("sha256", "capture")}
    keys = [key, deleted]

    def served(branch: str) -> dict:
        return online_features(feast.store(lakefs, branch), keys)

    # exp-1 inherited main's pointer: until it publishes, it serves main's rows.
    pointer = online_publish.read_pointer(lakefs, "exp-1")
    assert pointer is not None and pointer == online_publish.read_pointer(lakefs, "main")
    head, before = lakefs.head("exp-1"), served("exp-1")
    assert before["syscalls"][0] is None
    assert before["syscalls"][1] == _expected_vectors(main_rows, gone)["syscalls"]

    def unchanged() -> None:
        assert lakefs.head("exp-1") == head
        assert online_publish.read_pointer(lakefs, "exp-1") == pointer
        assert served("exp-1") == before

    # Redis down during feast_online: bounded retries, an error naming Redis, nothing changed.
    monkeypatch.setenv("DFP_REDIS_URL", "redis://:not-the-password@127.0.0.1:1/0")
    down = train_model(instance, "exp-1", FAST)
    assert not down.success
    errors = _step_errors(instance, down.run_id)
    assert "Redis at 127.0.0.1:1 is unreachable: feast_online writing project" in errors, errors
    assert "not-the-password" not in errors
    monkeypatch.setenv("DFP_REDIS_URL", redis_url)
    unchanged()

    # A blocking check fails after feast_online wrote the run's project: none of it is served,
    # and the project is gone.
    blocked = train_model(instance, "exp-1", {**FAST, "f1_floor": 1.01})
    assert not blocked.success
    written = _materializations(blocked)["feast_online"]["feast_project"].value
    assert online_publish.run_key_of(written) is not None
    unchanged()
    online = feast.online_settings()
    assert written not in online_publish.list_projects(online, lakefs.repository)

    # The rerun publishes: exp-1 serves its new rows, the app its mart lost is gone online,
    # and main (still serving the project exp-1 replaced) is untouched.
    assert train_model(instance, "exp-1", FAST).success
    on_exp = served("exp-1")
    assert on_exp["syscalls"][0] == _expected_vectors(exp_rows, row)["syscalls"]
    assert on_exp["syscalls"][1] is None
    assert served("main") == before

    # A killed run's project (registered, rows written, never published) is swept; the
    # served ones stay.
    orphan = online_publish.run_project(lakefs.repository, "exp-1", uuid.uuid4().hex)
    online_publish.register_project(online, orphan)
    with redis.Redis.from_url(redis_url) as client:
        client.set(b"\x01entity" + orphan.encode(), b"row")
    result = run_cleanup_sensor(instance)
    assert "and 1 online projects" in str(result), result
    assert online_publish.list_projects(online, lakefs.repository) == sorted(
        {online_publish.read_pointer(lakefs, b).project for b in ("main", "exp-1")}
    )
    with redis.Redis.from_url(redis_url) as client:
        assert not client.exists(b"\x01entity" + orphan.encode())
    assert served("exp-1") == on_exp


def test_real_sample_model(lakefs, instance, tables, shared_sample_dir):
    """The real Kronodroid sample end to end; the F1 figures go to the closing note."""
    assert build_staging(
        instance, "main", {"source": "local", "local_dir": str(shared_sample_dir)}
    ).success
    result = train_model(instance, "main", {"f1_floor": 0.0})
    assert result.success
    metadata = _materializations(result)["malware_model"]
    temporal, random = metadata["temporal_f1"].value, metadata["random_f1"].value
    print(f"real sample: temporal F1 {temporal:.4f}, random F1 {random:.4f}")
    print(f"real sample report:\n{metadata['metrics'].value}")
    assert 0.0 <= temporal <= 1.0 and 0.0 <= random <= 1.0
    rows = metadata["rows"].value
    assert rows["total"] == 1622

    # The real model's three exports agree with eager PyTorch on real feature rows.
    exports = export_models(instance, "main")
    assert exports.success
    for check in exports.get_asset_check_evaluations():
        print(f"real sample parity: {check.description}")
        assert check.passed, check.description
    assert len(exports.get_asset_check_evaluations()) == 3
