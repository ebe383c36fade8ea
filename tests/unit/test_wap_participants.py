"""Write-audit-publish participants: what runs register, how the publish records it."""

import dagster as dg

from dfp.lake import wap
from dfp_assets.toxic.staging import RAW_ASSET, build_comments_tokenized


def test_staged_round_trips_and_groups_once():
    a = wap.Staged("postgres", "staging__run_1a2b3c4d", "staging__main")
    b = wap.Staged("postgres", "production__run_1a2b3c4d", "production__main")
    assert wap.Staged.decode(a.encode()) == a
    assert wap.by_system([a, b, a]) == {"postgres": [a, b]}  # a retried step registers again


def test_publish_metadata_names_the_published_schemas():
    audit = wap.RunAudit(
        staged=[
            wap.Staged("postgres", "staging__run_1a2b3c4d", "staging__main"),
            wap.Staged("postgres", "production__run_1a2b3c4d", "production__main"),
        ]
    )
    meta = wap.publish_metadata("r1", "main", audit)
    assert meta["published.postgres"] == "production__main,staging__main"
    assert "published.postgres" not in wap.publish_metadata("r1", "main", wap.RunAudit())


def test_publish_refuses_staged_data_without_a_participant():
    audit = wap.RunAudit(staged=[wap.Staged("redis", "x", "y")])
    try:
        wap.publish_with(None, "r1", "main", audit, {})  # type: ignore[arg-type]
    except wap.PublishError as exc:
        assert "redis" in str(exc) and "nothing published" in str(exc)
    else:
        raise AssertionError("published without a participant")


def test_comments_tokenized_asset_shape():
    asset = build_comments_tokenized(lambda client, ref: None)  # type: ignore[arg-type,return-value]
    key = dg.AssetKey("comments_tokenized")
    assert asset.key == key
    assert asset.asset_deps[key] == {RAW_ASSET}
    assert asset.partitions_def is not None
    assert set(asset.required_resource_keys) >= {"lakefs", "postgres_staging", "spark"}
