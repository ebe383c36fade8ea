"""Mobile exports of the whole `toxicity_model` (int64 token ids + attention mask
[1, max_length] → encoder → head → P(toxic)) to ExecuTorch, TFLite/LiteRT and ONNX, each gated
by a blocking parity check on real comments of the branch at the model's threshold (glue over
`dfp_assets.platform.mobile`; pure logic in `dfp.toxic.serving`)."""

from pathlib import Path

import dagster as dg

from dfp.devicefarm.farm import TOXICITY_MODEL
from dfp.lake.lakefs_client import LakeFSClient
from dfp.toxic.load import read_comments
from dfp.toxic.model import MODEL_OBJECT, load_head
from dfp.toxic.records import ID, LABEL, TEXT
from dfp.toxic.serving import (
    ServingError,
    assemble,
    example_inputs,
    parity_comments,
    token_batch,
)
from dfp_assets.platform.mobile import Prepared, export_assets
from dfp_assets.toxic.model import toxicity_model

#: Bump when the export logic changes: memos of older exports are then not reused.
EXPORT_CODE_VERSION = "toxicity_mobile_export/1"


def _prepare(client: LakeFSClient, run_branch: str, tmp: Path, rows: int) -> Prepared:
    """The branch's whole toxicity model and a fixed batch of its real comments, tokenized
    to the model's max length."""
    saved = load_head(client.read(run_branch, MODEL_OBJECT))
    try:
        model = assemble(saved)
    except ServingError as exc:
        raise dg.Failure(description=f"toxicity_model export: {exc}") from exc
    raw = read_comments(client, run_branch)
    texts = parity_comments(
        raw.column(ID).to_pylist(),
        raw.column(TEXT).to_pylist(),
        raw.column(LABEL).to_pylist(),
        rows,
    )
    batch = list(token_batch(texts, saved.max_length))
    return Prepared(model, example_inputs(saved.max_length), batch, saved.threshold)


toxicity_model_executorch, toxicity_model_tflite, toxicity_model_onnx = export_assets(
    model=TOXICITY_MODEL,
    prefix="toxicity_model",
    upstream=toxicity_model,
    group="toxic_mobile",
    code_version=EXPORT_CODE_VERSION,
    prepare=_prepare,
    signature="static int64 input_ids and attention_mask [1, max_length]",
)
TOXICITY_EXPORT_ASSETS = (toxicity_model_executorch, toxicity_model_tflite, toxicity_model_onnx)
