"""The Great Expectations suite on the Postgres staging table, as the original system's.

Staging is `text_comments(id uuid, labels smallint, input_ids integer[], attention_mask
smallint[])` in a staging schema. The suite: labels, input_ids, attention_mask and id not null;
labels in {0, 1}; id unique and UUID-shaped; input_ids an integer array; attention_mask a 0/1 array.

Why pandas (an ephemeral context, no GE project on disk) and not GE's SQL datasource: GE 1.24
has no array expectations, and its SQL regex expectation compiles to `~`, which Postgres has for
text only (not for uuid or integer[]), so the SQL path would need a query asset of casts plus
custom SQL metrics. Read as text (`id::text`, `input_ids::text` gives Postgres's own `{1,2,3}`),
every check is a built-in map expectation that runs the same on a DataFrame and reports the
unexpected values and the ids of their rows. The cost: the table is read into memory once
(160k tokenized comments as text are a few hundred MB at most).

`validate_staging` returns plain data (`SuiteResult`); the Dagster glue turns it into blocking
asset check results (dfp_assets/toxic/quality.py).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import math
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dfp.toxic.records import ID, LABEL

if TYPE_CHECKING:
    import pandas as pd

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
STAGING_COLUMNS = (ID, LABEL, INPUT_IDS, ATTENTION_MASK)

UUID_REGEX = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# Postgres's text form of a one-dimensional array; non-empty (a tokenized comment has at least
# [CLS] and [SEP]); NULL elements do not match.
INTEGER_ARRAY_REGEX = r"^\{-?[0-9]+(?:,-?[0-9]+)*\}$"
MASK_ARRAY_REGEX = r"^\{[01](?:,[01])*\}$"

#: How many unexpected values (and their row ids) a result keeps.
SAMPLE_SIZE = 5


@dataclass(frozen=True)
class Expectation:
    """One expectation of the suite: a stable name (the asset check's), GE's type and kwargs."""

    name: str
    description: str
    expectation_type: str  # the great_expectations.expectations class name
    column: str
    kwargs: dict[str, Any] = field(default_factory=dict)


EXPECTATIONS: tuple[Expectation, ...] = (
    *(
        Expectation(
            f"{column}_not_null", f"{column} is never null", "ExpectColumnValuesToNotBeNull", column
        )
        for column in (LABEL, INPUT_IDS, ATTENTION_MASK, ID)
    ),
    Expectation(
        "labels_in_0_1",
        "labels is 0 or 1",
        "ExpectColumnValuesToBeInSet",
        LABEL,
        {"value_set": [0, 1]},
    ),
    Expectation("id_unique", "no two rows share an id", "ExpectColumnValuesToBeUnique", ID),
    Expectation(
        "id_uuid_shaped",
        "id looks like a UUID",
        "ExpectColumnValuesToMatchRegex",
        ID,
        {"regex": UUID_REGEX},
    ),
    Expectation(
        "input_ids_integer_array",
        "input_ids is a non-empty array of integers",
        "ExpectColumnValuesToMatchRegex",
        INPUT_IDS,
        {"regex": INTEGER_ARRAY_REGEX},
    ),
    Expectation(
        "attention_mask_0_1_array",
        "attention_mask is a non-empty array of 0s and 1s",
        "ExpectColumnValuesToMatchRegex",
        ATTENTION_MASK,
        {"regex": MASK_ARRAY_REGEX},
    ),
)
EXPECTATION_NAMES = tuple(e.name for e in EXPECTATIONS)


@dataclass(frozen=True)
class ExpectationResult:
    name: str
    description: str
    column: str
    success: bool
    element_count: int
    unexpected_count: int
    unexpected_values: list[Any]  # the first SAMPLE_SIZE, JSON-safe
    unexpected_ids: list[str | None]  # the ids of those rows
    error: str | None = None  # GE could not evaluate it (e.g. the column is missing)


@dataclass(frozen=True)
class SuiteResult:
    row_count: int
    results: list[ExpectationResult]

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    def by_name(self) -> dict[str, ExpectationResult]:
        return {r.name: r for r in self.results}

    def failures(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success]


# -- preparing the frame ---------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def pg_array_text(value: Any) -> str | None:
    """A sequence in Postgres's array text form (`[1, 2]` → `{1,2}`), a string as it is
    (already that form when read with `::text`), a missing value as None. Anything else is
    rendered with str(), so floats, booleans or nested lists fail the array regexes."""
    if _is_missing(value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Iterable) and not isinstance(value, bytes | dict):
        return "{" + ",".join("NULL" if _is_missing(v) else str(v) for v in value) + "}"
    return str(value)


def _id_text(value: Any) -> str | None:
    if _is_missing(value):
        return None
    return str(value) if isinstance(value, uuid.UUID | str) else repr(value)


def prepare_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The staging rows as the suite reads them: ids and arrays as text. Missing columns are
    left missing (their expectations then fail with GE's error)."""
    out = frame.copy()
    if ID in out:
        out[ID] = out[ID].map(_id_text).astype(object)
    for column in (INPUT_IDS, ATTENTION_MASK):
        if column in out:
            out[column] = out[column].map(pg_array_text).astype(object)
    return out


# -- running the suite -----------------------------------------------------------------------

# GE's own optional integrations, imported by `import great_expectations` whether used or not:
# its Spark and S3 support (pyspark with pyspark.ml, boto3: ~3 s here) and, for distributional
# expectations and rendering, scipy.stats and altair (~3 s). The suite validates a pandas frame
# with map expectations, so none of them is needed to run it.
_GE_UNUSED_INTEGRATIONS = ("pyspark", "boto3")
_GE_DEFERRED = ("scipy.stats", "altair")


class _DeferredImports(importlib.abc.MetaPathFinder):
    """Finds `names` as usual, but executes them on first attribute access (LazyLoader)."""

    def __init__(self, names: Sequence[str]):
        self._names = set(names)

    def find_spec(self, name, path, target=None):
        if name not in self._names:
            return None
        self._names.discard(name)  # find the real spec without this finder
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def import_great_expectations() -> ModuleType:
    """`great_expectations`, imported in about half its time: without its Spark and S3
    integrations (GE's compatibility layer sees them as not installed, in this process only;
    pyspark and boto3 stay importable for everything else) and with scipy.stats and altair
    deferred to first use. Called by the suite, and by a run's warm worker at its start."""
    if "great_expectations" in sys.modules:
        return sys.modules["great_expectations"]
    hidden = [m for m in _GE_UNUSED_INTEGRATIONS if m not in sys.modules]
    finder = _DeferredImports([m for m in _GE_DEFERRED if m not in sys.modules])
    sys.meta_path.insert(0, finder)
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        return importlib.import_module("great_expectations")
    finally:
        sys.meta_path.remove(finder)
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def _context():
    gx = import_great_expectations()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # In memory, no usage statistics (no outside network here), no progress bars in run logs.
    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def build_suite(expectations: Sequence[Expectation] = EXPECTATIONS):
    """The GE ExpectationSuite (each expectation's `meta.name` is its stable name)."""
    gx = import_great_expectations()
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name="toxic_comments_staging")
    for e in expectations:
        cls = getattr(gxe, e.expectation_type)
        suite.add_expectation(cls(column=e.column, meta={"name": e.name}, **e.kwargs))
    return suite


def _plain(value: Any) -> Any:
    """A JSON-safe copy of a value GE reports (numpy scalars, floats that are integers)."""
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else int(value) if value.is_integer() else value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value if isinstance(value, str | int | bool) or value is None else str(value)


def _error_message(exception_info: dict[str, Any] | None) -> str | None:
    """GE's exception message: its exception_info is one entry, or one per failed metric."""
    if not exception_info:
        return None
    entries = [exception_info] if "raised_exception" in exception_info else exception_info.values()
    messages = {
        e.get("exception_message") or "error"
        for e in entries
        if isinstance(e, dict) and e.get("raised_exception")
    }
    return "; ".join(sorted(messages)) or None


def validate_staging(
    frame: pd.DataFrame, expectations: Sequence[Expectation] = EXPECTATIONS
) -> SuiteResult:
    """Run the suite on staging rows (id, labels, input_ids, attention_mask; arrays as lists
    or as Postgres array text)."""
    prepared = prepare_frame(frame)
    context = _context()
    asset = context.data_sources.add_pandas("staging").add_dataframe_asset("text_comments")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": prepared}
    )
    result_format: dict[str, Any] = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": SAMPLE_SIZE,
    }
    if ID in prepared:
        result_format["unexpected_index_column_names"] = [ID]
    validation = batch.validate(build_suite(expectations), result_format=result_format)
    by_name = {e.name: e for e in expectations}
    results = []
    for r in validation.results:
        e = by_name[r.expectation_config.meta["name"]]
        info = r.result or {}
        error = _error_message(r.exception_info)
        index = info.get("partial_unexpected_index_list") or []
        results.append(
            ExpectationResult(
                name=e.name,
                description=e.description,
                column=e.column,
                success=bool(r.success),
                element_count=int(info.get("element_count") or len(prepared)),
                unexpected_count=int(info.get("unexpected_count") or 0),
                unexpected_values=_plain(list(info.get("partial_unexpected_list") or [])),
                unexpected_ids=[_plain(row.get(ID)) for row in index[:SAMPLE_SIZE]],
                error=error,
            )
        )
    order = {name: i for i, name in enumerate(by_name)}
    results.sort(key=lambda r: order[r.name])
    return SuiteResult(row_count=len(prepared), results=results)


# -- reading staging from Postgres -----------------------------------------------------------


def read_staging(url: str, schema: str, table: str = "text_comments") -> pd.DataFrame:
    """The staging table (SQLAlchemy `url`), ids and arrays read as text by Postgres."""
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        quote = engine.dialect.identifier_preparer.quote
        query = (
            f"select {ID}::text as {ID}, {LABEL}, {INPUT_IDS}::text as {INPUT_IDS}, "
            f"{ATTENTION_MASK}::text as {ATTENTION_MASK} from {quote(schema)}.{quote(table)}"
        )
        with engine.connect() as conn:
            return pd.read_sql_query(sa.text(query), conn)
    finally:
        engine.dispose()


def validate_staging_table(url: str, schema: str, table: str = "text_comments") -> SuiteResult:
    """Read `schema.table` from Postgres and run the suite on it."""
    return validate_staging(read_staging(url, schema, table))
