"""Model logic every domain shares (metrics, determinism); no Dagster, no domain."""
