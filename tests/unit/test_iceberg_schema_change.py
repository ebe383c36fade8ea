"""When a write changes an Iceberg table's schema (dfp.lake.iceberg.adds_columns_or_types)."""

import pyarrow as pa
from pyiceberg.io.pyarrow import pyarrow_to_schema
from pyiceberg.table.name_mapping import MappedField, NameMapping

from dfp.lake.iceberg import adds_columns_or_types

DATA = pa.schema([("sha256", pa.string()), ("n", pa.int64()), ("when", pa.date32())])


def _as_table_has_it(schema: pa.Schema) -> pa.Schema:
    # What `Table.schema().as_arrow()` gives: field ids in metadata, large strings.
    mapping = NameMapping(
        [MappedField(field_id=i + 1, names=[f.name]) for i, f in enumerate(schema)]
    )
    return pyarrow_to_schema(schema, name_mapping=mapping).as_arrow()


def test_the_same_columns_change_nothing():
    table = _as_table_has_it(DATA)
    assert table != DATA  # why a plain comparison always updated the schema
    assert not adds_columns_or_types(table, DATA)
    assert not adds_columns_or_types(table, pa.schema(list(DATA)[:2]))  # a column left out


def test_a_new_column_or_another_type_changes_it():
    table = _as_table_has_it(DATA)
    assert adds_columns_or_types(table, DATA.append(pa.field("extra", pa.string())))
    assert adds_columns_or_types(table, DATA.set(1, pa.field("n", pa.float64())))
