"""Toxic-comment domain: pure logic (no Dagster imports)."""
