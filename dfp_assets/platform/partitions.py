"""The one partition dimension of every dfp asset: a lakeFS branch."""

import dagster as dg

lakefs_branch_partitions = dg.DynamicPartitionsDefinition(name="lakefs_branch")
