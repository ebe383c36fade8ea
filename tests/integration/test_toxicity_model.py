"""`build_toxicity_model` as the Definitions register it, on real lakeFS, Postgres and MLflow,
on the shared 10,000-comment sample: the head on the packaged MiniLM's vectors reaches ROC-AUC
0.95 on the 30 % test split, with the TF-IDF baseline beside it and the lineage in MLflow; a
branch that adds 100 comments encodes those 100 only; a run below the ROC-AUC floor publishes
nothing; the whole model's mobile exports match eager PyTorch on real comments (a faulty one
is blocked), the device farm benchmarks them, and `dfp classify` scores with the published
model. Max length 128 (the asset's default) keeps the one full encoding to minutes."""

import copy
import csv
import json
import os
import time

import dagster as dg
import pytest
from click.testing import CliRunner

from dfp import tracking
from dfp.cli import main as cli
from dfp.devicefarm.farm import TOXICITY_MODEL, export_info_object, export_object
from dfp.lake import memo, wap
from dfp.settings import load_settings
from dfp.toxic import synthetic
from dfp.toxic.embeddings import EMBEDDINGS_OBJECT
from dfp_assets.definitions import export_toxicity_job, toxicity_job, train_toxicity_job
from dfp_assets.toxic.model import EXPERIMENT, MODEL_OBJECT, ROC_AUC_CHECK
from dfp_assets.toxic.raw import SHARED_SAMPLE
from dfp_resources.environment import resource_run_config
from mobile.exporters import FORMATS, ExportInfo
from mobile.records import parse_upload
from tests.integration.test_toxic_build import check_results, materialized
from tests.integration.test_toxic_staging import conn  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

EMBEDDINGS = dg.AssetKey("comment_embeddings")
MODEL = dg.AssetKey("toxicity_model")


def run(
    instance, job, branch: str, ops: dict, assets: list[dg.AssetKey] | None = None
) -> dg.JobExecutionResult:
    if branch not in instance.get_dynamic_partitions("lakefs_branch"):
        instance.add_dynamic_partitions("lakefs_branch", [branch])
    run_config = {
        "resources": resource_run_config(load_settings()),
        "execution": {"config": {"in_process": {}}},
        "ops": {name: {"config": config} for name, config in ops.items()},
    }
    with dg.execute_job(
        dg.reconstructable(job),
        instance=instance,
        run_config=run_config,
        tags={"dagster/partition": branch},
        asset_selection=assets,
        raise_on_error=False,
    ) as result:
        return result


def reported(instance, run_id: str, asset: dg.AssetKey) -> dict:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event.asset_key == asset:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{asset.to_user_string()} not materialized in run {run_id}")


TOXIC = "You are a stupid idiot, shut up and go away, nobody wants your garbage here."
BENIGN = "Thanks for adding the references; I fixed the date in the second paragraph."


def check_exports_serving_and_device_farm(lakefs, instance, tmp_path, monkeypatch) -> None:
    """On main, with its model published: a faulty export is blocked with nothing published,
    the real exports pass parity, `dfp classify` scores known comments, the device farm
    benchmarks the exports of this second model."""
    import torch

    import dfp_assets.platform.mobile as mobile_assets
    from mobile.exporters import export_model

    def faulty_export(model, fmt, out_dir, example_inputs=None):
        broken = copy.deepcopy(model)
        with torch.no_grad():
            broken.head.mlp[-1].bias += 6.0  # every probability moves towards toxic
        return export_model(broken, fmt, out_dir, example_inputs)

    head = lakefs.head("main")
    with monkeypatch.context() as patch:
        patch.setattr(mobile_assets, "export_model", faulty_export)
        onnx = dg.AssetKey("toxicity_model_onnx")
        result = run(instance, export_toxicity_job, "main", {}, assets=[onnx])
    assert not result.success
    check = check_results(instance, result.run_id)["toxicity_model_onnx:parity"]
    assert not check.passed
    assert check.metadata["max_abs_diff"].value > 1e-4
    assert check.metadata["class_mismatches"].value > 0
    assert lakefs.head("main") == head
    assert not list(lakefs.list_objects("main", TOXICITY_MODEL.exports_prefix))
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]

    result = run(instance, export_toxicity_job, "main", {})
    assert result.success
    checks = check_results(instance, result.run_id)
    for fmt in FORMATS:
        check = checks[f"toxicity_model_{fmt}:parity"]
        assert check.passed, check.description
        assert check.metadata["max_abs_diff"].value <= 1e-4
        assert check.metadata["threshold"].value == 0.45 and check.metadata["rows"].value == 64
        info = ExportInfo.model_validate_json(
            lakefs.read("main", export_info_object(fmt, TOXICITY_MODEL))
        )
        assert [i.name for i in info.inputs] == ["input_ids", "attention_mask"]
        assert [i.shape for i in info.inputs] == [[1, 128], [1, 128]]
        assert memo.checksum(lakefs, "main", export_object(fmt, TOXICITY_MODEL)) is not None
        print(f"{fmt}: {info.size_bytes / 2**20:.1f} MB, {check.description}")

    output = CliRunner().invoke(cli, ["classify", TOXIC, BENIGN, "--branch", "main"])
    assert output.exit_code == 0, output.output
    lines = output.output.splitlines()
    assert lines[0].startswith("toxicity_model of main @ ") and "threshold 0.45" in lines[0]
    assert lines[1].split()[1] == "toxic" and lines[1].endswith(TOXIC)
    assert lines[2].split()[1:3] == ["not", "toxic"] and lines[2].endswith(BENIGN)
    print(output.output)
    missing = CliRunner().invoke(cli, ["classify", "hello", "--branch", "no-such-branch"])
    assert missing.exit_code == 1 and "does not exist" in missing.output

    upload = tmp_path / "upload.json"
    argv = ["devicefarm", "run", "--device", "host", "--branch", "main"]
    argv += ["--model", "toxicity_model", "--upload", "none", "--output", str(upload)]
    farm = CliRunner().invoke(cli, [*argv, "--iterations", "5", "--warmup", "1"])
    assert farm.exit_code == 0, farm.output
    records = parse_upload(json.loads(upload.read_text()), source=str(upload)).records
    assert sorted(r.model.format for r in records) == sorted([*FORMATS, "pytorch"])
    assert {r.model.name for r in records} == {"toxicity_model"}


def test_toxicity_model_on_the_shared_sample(lakefs, conn, instance, tmp_path, monkeypatch):  # noqa: F811
    if not SHARED_SAMPLE.is_dir():
        pytest.skip("../shared/data/toxic_comments is not present")
    floor = {"roc_auc_floor": 0.95}

    started = time.monotonic()
    result = run(
        instance,
        toxicity_job,
        "main",
        {"comments_raw": {"source": "shared"}, "toxicity_model": floor},
    )
    main_seconds = time.monotonic() - started

    assert result.success
    embeddings = reported(instance, result.run_id, EMBEDDINGS)
    model = reported(instance, result.run_id, MODEL)
    rows = embeddings["dagster/row_count"]
    # Comments whose first 128 tokens are the same share one vector (9,986 distinct of 10,000).
    assert rows > 9900 and rows - 20 < embeddings["encoded"] <= rows
    assert embeddings["reused_vectors"] == 0
    assert embeddings["max_length"] == 128
    assert model["test_roc_auc"] >= 0.95, model["metrics"]
    baseline = model["baseline_test_roc_auc"]
    assert 0.5 < baseline < 1.0
    counts = model["class_counts"]
    assert sum(c["toxic"] + c["not_toxic"] for c in counts.values()) == rows
    assert counts["test"]["toxic"] + counts["test"]["not_toxic"] == round(0.3 * rows)
    assert model["test"]["threshold"] == 0.45
    checks = check_results(instance, result.run_id)
    assert checks[f"toxicity_model:{ROC_AUC_CHECK}"].passed
    assert memo.checksum(lakefs, "main", MODEL_OBJECT) is not None

    # MLflow: the metrics and the lineage (lakeFS commit, Delta and Postgres versions read,
    # encoder and tokenizer identity with file hashes, Dagster run).
    recorded = tracking.Tracker(os.environ["MLFLOW_TRACKING_URI"], EXPERIMENT).read(
        model["mlflow_run_id"]
    )
    assert recorded.metrics["test_roc_auc"] == model["test_roc_auc"]
    assert recorded.metrics["baseline_test_roc_auc"] == baseline
    tags = recorded.tags
    assert tags[tracking.TAG_DAGSTER_RUN] == result.run_id
    assert tags[tracking.TAG_BRANCH] == "main"
    assert lakefs.get_commit(tags[tracking.TAG_COMMIT]).id == tags[tracking.TAG_COMMIT]
    assert '"model.safetensors"' in tags["dfp.toxic.encoder"]
    assert '"vocab.txt": "07eced37' in tags["dfp.toxic.encoder"]
    assert '"max_length": 128' in tags["dfp.toxic.tokenizer"]
    assert '"version": ' in tags["dfp.delta.comments_raw"]
    assert '"digest": "sha256:' in tags["dfp.postgres.table_clean"]
    assert tags[tracking.TAG_QUALITY_GATE] == "passed"
    print(
        f"\nmain: {rows} comments, encoded {embeddings['encoded']} in "
        f"{embeddings['encode_seconds']}s ({embeddings['comments_per_second']}/s at 128), head "
        f"trained in {model['train_seconds']}s; test ROC-AUC {model['test_roc_auc']:.4f}, "
        f"PR-AUC {model['test_pr_auc']:.4f}, F1 {model['test_f1']:.4f}; baseline ROC-AUC "
        f"{baseline:.4f}; whole run {main_seconds:.0f}s"
    )

    # `dfp reproduce`'s logic: the embeddings and texts at the recorded commit, retrained.
    from dfp.toxic.reproduce import reproduce

    again = reproduce(
        model["mlflow_run_id"],
        client=lakefs,
        tracker=tracking.Tracker(os.environ["MLFLOW_TRACKING_URI"], EXPERIMENT),
        log=print,
    )
    assert again.identical, again.differences
    assert again.metrics["test_roc_auc"] == pytest.approx(model["test_roc_auc"], abs=1e-6)
    assert len(again.recorded_metrics) == len(again.metrics)

    check_exports_serving_and_device_farm(lakefs, instance, tmp_path, monkeypatch)

    # A branch with 100 more comments encodes those 100 only.
    main_embeddings = memo.checksum(lakefs, "main", EMBEDDINGS_OBJECT)
    lakefs.create_branch("plus-100", "main")
    texts, labels = synthetic.generate(100, seed=17)
    source = tmp_path / "comments.csv"
    with open(SHARED_SAMPLE / "text_comment_1.csv", newline="") as handle:
        shared = list(csv.reader(handle))
    with open(source, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows(shared)
        writer.writerows(zip(texts, labels, strict=True))
    result = run(
        instance,
        toxicity_job,
        "plus-100",
        {"comments_raw": {"source": "local", "local_dir": str(source)}, "toxicity_model": floor},
    )
    assert result.success
    added = reported(instance, result.run_id, EMBEDDINGS)
    assert added["dagster/row_count"] == rows + 100
    assert (added["encoded"], added["reused_vectors"]) == (100, rows)
    assert memo.checksum(lakefs, "main", EMBEDDINGS_OBJECT) == main_embeddings
    print(f"plus-100: encoded {added['encoded']} in {added['encode_seconds']}s")

    # Below the floor: the run fails its blocking check and publishes nothing.
    head = lakefs.head("plus-100")
    model_object = memo.checksum(lakefs, "plus-100", MODEL_OBJECT)
    result = run(
        instance,
        train_toxicity_job,
        "plus-100",
        {"toxicity_model": {"roc_auc_floor": 0.999, "seed": 1}},
    )
    assert not result.success
    check = check_results(instance, result.run_id)[f"toxicity_model:{ROC_AUC_CHECK}"]
    assert not check.passed and check.metadata["roc_auc_floor"].value == 0.999
    assert reported(instance, result.run_id, EMBEDDINGS)["encoded"] == 0
    assert MODEL in materialized(instance, result.run_id)
    assert lakefs.head("plus-100") == head
    assert memo.checksum(lakefs, "plus-100", MODEL_OBJECT) == model_object
    failed = reported(instance, result.run_id, MODEL)
    gate = tracking.Tracker(os.environ["MLFLOW_TRACKING_URI"], EXPERIMENT).read(
        failed["mlflow_run_id"]
    )
    assert gate.tags[tracking.TAG_QUALITY_GATE] == "failed"
