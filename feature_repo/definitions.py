"""dfp's Feast project as code: entities, one vector view per feature group, one service.

Built by `build_definitions(source)` because the offline source differs per lakeFS branch
(`s3://<repo>/<branch>/feast/app_features.parquet`);
`dfp.kronodroid.features.apply_definitions` applies them to a branch's store. Not a
`feast apply` repository: there is no feature_store.yaml, the store is configured in code by
`dfp.kronodroid.features.feature_store`.

Features are keyed by (app, capture), two entities: Kronodroid measured many apps twice, on a
real device and on an emulator, with different syscall counts (and possibly different static
metadata), so `sha256` alone does not identify a feature row. Requests pass both keys:
`{"sha256": ..., "capture": "real_device" | "emulator"}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32, String

from dfp.kronodroid.features import FEATURE_GROUPS, SERVICE_NAME

#: Tag holding a view's column order (JSON list of mart column names).
COLUMNS_TAG = "dfp.columns"

app = Entity(
    name="app",
    join_keys=["sha256"],
    value_type=ValueType.STRING,
    description="An Android app (APK), by its sha256.",
)
capture = Entity(
    name="capture",
    join_keys=["capture"],
    value_type=ValueType.STRING,
    description="How the app was run: 'real_device' or 'emulator' (one feature row each).",
)

_DESCRIPTIONS = {
    "syscalls": "Syscall counts of the app's run (288 syscalls) and their total nr_syscalls.",
    "permissions": "Permission flags (166, 0/1) and the 7 permission totals.",
    "static_metadata": "Static APK metadata: file sizes, submissions, component counts.",
}


@dataclass(frozen=True)
class FeastDefinitions:
    entities: tuple[Entity, ...]
    feature_views: tuple[FeatureView, ...]
    feature_service: FeatureService

    def objects(self) -> list[Entity | FeatureView | FeatureService]:
        return [*self.entities, *self.feature_views, self.feature_service]


def feature_view(group: str, source: FileSource) -> FeatureView:
    """One view per group: a single `Array(Float32)` field named after the group. ttl 0 =
    values never expire (an app's features describe the APK, not a moment)."""
    columns = FEATURE_GROUPS[group]
    return FeatureView(
        name=group,
        entities=[app, capture],
        ttl=timedelta(0),
        schema=[
            Field(name="sha256", dtype=String),
            Field(name="capture", dtype=String),
            Field(
                name=group,
                dtype=Array(Float32),
                description=f"{len(columns)} float32 values, order in tag {COLUMNS_TAG}",
            ),
        ],
        source=source,
        online=True,
        description=_DESCRIPTIONS[group],
        tags={
            COLUMNS_TAG: json.dumps(list(columns)),
            "dfp.length": str(len(columns)),
            "dfp.dtype": "float32",
            "dfp.nulls": "0",
        },
    )


def build_definitions(source: FileSource) -> FeastDefinitions:
    views = tuple(feature_view(group, source) for group in FEATURE_GROUPS)
    service = FeatureService(
        name=SERVICE_NAME,
        features=list(views),
        description="The malware classifier's input: the vectors concatenated in view order.",
        tags={"dfp.feature_order": ",".join(FEATURE_GROUPS)},
    )
    return FeastDefinitions(entities=(app, capture), feature_views=views, feature_service=service)
