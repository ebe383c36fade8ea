"""The whole toxicity model's mobile exports, serving and device farm, on a small synthetic
branch (400 comments: the encoding is seconds, not the shared sample's minutes): a faulty
export is blocked with nothing published, the real ONNX, ExecuTorch and TFLite files match
eager PyTorch on real comments of the branch at the model's threshold, `dfp classify` scores
known comments with the published model, and `dfp devicefarm run --model toxicity_model`
benchmarks the exports."""

import copy
import json

import dagster as dg
import pytest
from click.testing import CliRunner

from dfp.cli import main as cli
from dfp.devicefarm.farm import TOXICITY_MODEL, export_info_object, export_object
from dfp.lake import memo, wap
from dfp_assets.definitions import export_toxicity_job, toxicity_job
from mobile.exporters import FORMATS, ExportInfo
from mobile.records import parse_upload
from tests.integration.test_toxic_build import check_results
from tests.integration.test_toxic_staging import conn  # noqa: F401  (fixture)
from tests.integration.test_toxicity_model import run

pytestmark = pytest.mark.integration

DATA = {"source": "synthetic", "synthetic_scale": 0.0025, "synthetic_seed": 3}


TOXIC = "You are a stupid idiot, shut up and go away, nobody wants your garbage here."
BENIGN = "Thanks for adding the references; I fixed the date in the second paragraph."


def test_exports_serving_and_device_farm(lakefs, conn, instance, tmp_path, monkeypatch):  # noqa: F811
    import torch

    result = run(
        instance,
        toxicity_job,
        "main",
        {
            "comments_raw": DATA,
            "comments_raw_checks": {"min_rows": 100},
            "toxicity_model": {"roc_auc_floor": 0.5},
        },
    )
    assert result.success

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
    # The encoder's progress bar shares the stream (and may precede the header on its line).
    assert "toxicity_model of main @ " in output.output and "(threshold 0.45)" in output.output
    toxic, benign = (
        next(line for line in output.output.splitlines() if line.endswith(text))
        for text in (TOXIC, BENIGN)
    )
    assert toxic.split()[1] == "toxic"
    assert benign.split()[1:3] == ["not", "toxic"]
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
