"""Mobile exports of a model with two int64 inputs (token ids + attention mask), as the toxicity
model has: a tiny randomly initialised BERT behind the real `PooledEncoder` and head, exported
to ExecuTorch, TFLite and ONNX, run by each runtime, checked for parity, benchmarked."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from dfp.toxic.encoder import _pooled_encoder_class
from dfp.toxic.model import new_head, whole_model
from dfp.toxic.serving import token_batch
from mobile.exporters import FORMATS, export_model
from mobile.harness import benchmark_inputs, measure
from mobile.parity import check_parity
from mobile.runtimes import InputSpec, load_runner, validate_inputs

LENGTH = 16
TEXTS = [
    "you are a complete idiot",
    "thanks, the new section reads well",
    "shut up, nobody cares about your stupid edits",
    "I added two references to the article",
    "what a pathetic loser",
    "the infobox now matches the sources",
    "go away",
    "could you check the date in the second paragraph?",
]


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=LENGTH,
    )
    encoder = _pooled_encoder_class()(BertModel(config), "layer_means", False, (0, 1)).eval()
    head = new_head(encoder.dim, hidden=8)
    model = whole_model(encoder, head)
    ids, mask = (torch.from_numpy(a) for a in token_batch(TEXTS, LENGTH))
    with torch.no_grad():
        head.fit_standardization(encoder(ids, mask))
        # Centre the logits so that both classes occur at the 0.45 threshold.
        head.mlp[-1].bias -= head.logits(encoder(ids, mask)).median()
    return model


@pytest.fixture(scope="module")
def batch() -> list[np.ndarray]:
    return list(token_batch(TEXTS, LENGTH))


@pytest.fixture(scope="module")
def examples(batch: list[np.ndarray]) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.from_numpy(batch[0][:1]),
        "attention_mask": torch.from_numpy(batch[1][:1]),
    }


@pytest.fixture(scope="module")
def exports(reference, examples, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("token-exports")
    paths = {}
    for fmt in FORMATS:
        path, info = export_model(reference, fmt, out / fmt, examples)
        assert [(i.name, i.shape, i.dtype) for i in info.inputs] == [
            ("input_ids", [1, LENGTH], "int64"),
            ("attention_mask", [1, LENGTH], "int64"),
        ]
        assert (info.input_name, info.input_shape, info.output_shape) == (
            "input_ids",
            [1, LENGTH],
            [1, 1],
        )
        paths[fmt] = path
    return paths


def test_batch_covers_both_classes(reference, batch) -> None:
    with torch.no_grad():
        p = reference(*(torch.from_numpy(a) for a in batch)).numpy().ravel()
    assert 0 < int((p >= 0.45).sum()) < len(p)


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_runtime_reads_both_inputs_in_order_and_matches_eager(
    reference, exports, batch, fmt
) -> None:
    runner = load_runner(fmt, exports[fmt])
    assert [s.shape for s in runner.inputs] == [(1, LENGTH), (1, LENGTH)]
    assert runner.n_features is None
    report = check_parity(reference, runner, batch, threshold=0.45)
    assert report.passed, report.summary()
    assert report.rows == len(TEXTS) and report.threshold == 0.45
    # The inputs are not interchangeable: swapped, the model computes something else.
    swapped = runner.predict([batch[1], batch[0]])
    assert np.abs(swapped - runner.predict(batch)).max() > 1e-3


@pytest.mark.parametrize("fmt", FORMATS)
def test_parity_fails_when_the_export_is_of_another_model(reference, exports, batch, fmt) -> None:
    # Equivalent to a faulty export, without exporting twice: the file is the reference's, the
    # eager model it is checked against has a shifted output bias.
    other = copy.deepcopy(reference)
    with torch.no_grad():
        other.head.mlp[-1].bias += 3.0
    report = check_parity(other, load_runner(fmt, exports[fmt]), batch, threshold=0.45)
    assert not report.passed
    assert report.max_abs_diff > 1e-4 and report.class_mismatches > 0
    assert "FAILED" in report.summary()


def test_harness_times_a_two_input_model(exports) -> None:
    result = measure("onnx", exports["onnx"], iterations=5, warmup=1)
    assert result["iterations"] == 5 and len(result["latencies_us"]) == 5
    assert all(v > 0 for v in result["latencies_us"])


def test_benchmark_inputs_are_valid_tokens_and_a_full_mask() -> None:
    specs = (InputSpec("input_ids", (1, 4), "int32"), InputSpec("mask", (1, 4), "int64"))
    ids, mask = benchmark_inputs(specs)
    assert ids.dtype == np.int32 and mask.dtype == np.int64
    assert ids.tolist() == [[1, 1, 1, 1]] and mask.tolist() == [[1, 1, 1, 1]]


SPECS = (InputSpec("input_ids", (1, 3), "int64"), InputSpec("attention_mask", (1, 3), "int64"))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, 3), np.int64), r"sequence of 2 arrays"),
        ([np.zeros((2, 3), np.int64)], r"got 1 input arrays"),
        ([np.zeros((2, 4), np.int64)] * 2, r"input_ids must be \[N >= 1, 3\]"),
        ([np.zeros((0, 3), np.int64)] * 2, r"input_ids must be \[N >= 1, 3\]"),
        ([np.zeros((2, 3), np.float32)] * 2, r"input_ids must be integers"),
        ([np.zeros((2, 3), np.int64), np.zeros((3, 3), np.int64)], r"different batch sizes"),
    ],
)
def test_validate_inputs_names_the_problem(bad, message) -> None:
    with pytest.raises(ValueError, match=message):
        validate_inputs(bad, SPECS)


def test_validate_inputs_casts_to_the_models_dtypes() -> None:
    ids, mask = validate_inputs([[[1, 2, 3]], [[1, 1, 0]]], SPECS)
    assert ids.dtype == mask.dtype == np.int64 and ids.flags.c_contiguous


def test_export_rejects_bad_example_inputs(reference, tmp_path) -> None:
    with pytest.raises(ValueError, match="batch 1"):
        export_model(reference, "onnx", tmp_path, {"input_ids": torch.zeros(2, 4).long()})
    with pytest.raises(ValueError, match="dtype"):
        export_model(reference, "onnx", tmp_path, {"input_ids": torch.zeros(1, 4).half()})
    with pytest.raises(ValueError, match="n_features"):
        export_model(reference, "onnx", tmp_path)
