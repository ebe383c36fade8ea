"""`cross_branch_evaluation`: another branch's published model (run config `model_from`,
default `main`) scored on this branch's training set, beside this branch's own model. Thin
glue over `dfp.kronodroid.evaluation`.

Not automated: which model to compare with is a question a user asks (job
`evaluate_cross_branch`, or `dfp evaluate --model-from A --on B` from the shell).
"""

import json

import dagster as dg
from pydantic import Field

from dfp.kronodroid.evaluation import EvaluationError, evaluate_across
from dfp.settings import DEFAULT_BRANCH
from dfp_assets.kronodroid.features import training_set
from dfp_assets.kronodroid.model import malware_model
from dfp_assets.platform.partitions import branch_asset
from dfp_assets.platform.step import branch_step
from dfp_resources.lakefs import LakeFSResource

EVALUATIONS_PREFIX = "evaluations/malware_model/"


def evaluation_object(model_from: str) -> str:
    """Where the evaluation of `model_from`'s model lands on the evaluated branch."""
    return f"{EVALUATIONS_PREFIX}from_{model_from}.json"


class CrossBranchEvaluationConfig(dg.Config):
    model_from: str = Field(
        default=DEFAULT_BRANCH,
        description="lakeFS branch whose published malware_model is scored on this branch",
    )


@branch_asset(
    group="model",
    deps=[training_set, malware_model],
    description="The published malware_model of another branch (run config `model_from`, "
    "default main) scored on this branch's training set (all rows, and the temporal test "
    "side), with the delta against this branch's own model.",
)
def cross_branch_evaluation(
    context: dg.AssetExecutionContext, config: CrossBranchEvaluationConfig, lakefs: LakeFSResource
) -> dg.MaterializeResult:
    with branch_step(context, lakefs) as step:
        try:
            result = evaluate_across(
                step.client, model_from=config.model_from, on=step.branch, on_ref=step.run_branch
            )
        except EvaluationError as exc:
            raise dg.Failure(str(exc)) from exc
        figures = result.metrics()
        lineage = {
            "model_from": result.model_from.branch,
            "model_from_commit": result.model_from.commit,
            "model_from_mlflow_run_id": result.model_from.mlflow_run_id or "",
            "own_model_commit": result.own.commit if result.own else "",
            "own_mlflow_run_id": (result.own.mlflow_run_id or "") if result.own else "",
            "training_set_commit": result.data.commit,
            "training_set_digest": result.data.digest,
        }
        target = evaluation_object(config.model_from)
        report = {**lineage, "metrics": figures, "rows": {s.subset: s.rows for s in result.subsets}}
        step.client.upload(
            step.run_branch, target, json.dumps(report, indent=2, sort_keys=True).encode()
        )
        step.commit(
            f"cross_branch_evaluation of {config.model_from}'s model on {step.branch}",
            {"model_from": config.model_from, "model_from_commit": result.model_from.commit},
        )
    context.log.info(f"{result.summary()}\n{result.text()}")
    return dg.MaterializeResult(
        metadata=step.reported(
            {
                **lineage,
                "evaluation": dg.MetadataValue.md(result.markdown()),
                "rows": dg.MetadataValue.json(report["rows"]),
                **figures,
            },
            wrote=target,
        )
    )
