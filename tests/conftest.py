"""Fixtures shared by every test layer."""

from pathlib import Path

import pytest

from dfp.settings import PROJECT_ROOT, get_settings
from tests.integration.cdc_stack import cdc  # noqa: F401  (fixture, module-scoped)
from tests.stack_fixtures import (  # noqa: F401  (fixtures, registered here for every layer)
    instance,
    lakefs,
    lakefs_stack,
    postgres_stack,
    postgres_url,
    redis_url,
    spark_cluster,
)


def pytest_configure(config: pytest.Config) -> None:
    """Prepare the dbt manifests when a dbt project changed: loading the definitions never
    runs dbt, and a test session should see the models as they are now."""
    from dfp.kronodroid.dbt_manifest import manifest_is_stale

    if manifest_is_stale(PROJECT_ROOT / "dbt" / "kronodroid"):
        from dfp_assets.kronodroid.dbt_project import prepare

        prepare()
    if manifest_is_stale(PROJECT_ROOT / "dbt" / "toxic_comments"):
        from dfp_assets.toxic.dbt_project import prepare as prepare_toxic

        prepare_toxic()


SHARED_SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "kronodroid"
SAMPLE_FILE = SHARED_SAMPLE / "real_device_subset_2019.csv"


@pytest.fixture
def shared_sample_dir() -> Path:
    """The real 1,622-row sample in ../shared (absent in a user's clone: skip then)."""
    if not SAMPLE_FILE.is_file():
        pytest.skip("../shared/data/kronodroid is not present")
    return SHARED_SAMPLE


@pytest.fixture(autouse=True)
def _fresh_settings():
    """Each test reads the settings as its fixtures left the environment (they are cached
    per process); a test changing the environment itself calls reload_settings()."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
