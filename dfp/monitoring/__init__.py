"""Prometheus metrics of the platform (pure logic: no Dagster imports).

`snapshot` holds plain records of what the Dagster instance and lakeFS know, `metrics` turns
one snapshot into Prometheus metric families, `exporter` serves them on /metrics, and
`domains` says which domain an asset, job or sensor belongs to. The Dagster side
(`dfp_assets.platform.monitoring`) only fills a snapshot.
"""
