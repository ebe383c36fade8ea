"""Dagster glue of the toxic-comment domain (pure logic in `dfp.toxic`)."""
