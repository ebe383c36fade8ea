"""The dbt project's generated column macro and SQL-safe names stay in step with the schema."""

from dfp.kronodroid.schema import (
    CASE_COLLIDING_PERMISSIONS,
    LABEL_LEAKING_COLUMNS,
    dbt_columns_macro,
    feature_columns,
    sql_feature_columns,
    sql_name,
)
from dfp.settings import PROJECT_ROOT


def test_generated_macro_is_current():
    macro = PROJECT_ROOT / "dbt" / "kronodroid" / "macros" / "kronodroid_columns.sql"
    assert macro.read_text() == dbt_columns_macro(), (
        "regenerate with `uv run python -m dfp.kronodroid.schema`"
    )


def test_sql_feature_names_are_unique_without_case():
    names = sql_feature_columns()
    assert len(names) == len(feature_columns()) == len({n.lower() for n in names})
    # The one known clash: syscall `reboot` and permission `REBOOT`.
    assert CASE_COLLIDING_PERMISSIONS == {"REBOOT"}
    assert sql_name("REBOOT") == "REBOOT_permission"
    assert sql_name("reboot") == "reboot"


def test_macro_keeps_label_leaking_columns_out_of_features():
    macro = dbt_columns_macro()
    features_part = macro.split("kronodroid_label_leaking_columns")[0]
    for column in LABEL_LEAKING_COLUMNS:
        assert f'"{column}"' not in features_part
