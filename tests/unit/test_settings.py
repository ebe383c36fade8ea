"""dfp's one settings object, and how resources get their settings as declared config."""

import os
import subprocess
import sys

import dagster as dg
import pytest

from dfp import settings
from dfp.settings import SettingsError, load_settings

VARIABLES = (
    "DFP_ENV",
    "DFP_DBT_TARGET",
    "DFP_FEAST_ONLINE",
    "DFP_FEAST_OFFLINE",
    "DFP_FEAST_HOME",
    "DFP_REDIS_URL",
    "DFP_ICEBERG_CATALOG_URI",
    "MLFLOW_TRACKING_URI",
    "DFP_F1_FLOOR",
    "DFP_DAGSTER_URL",
    "DFP_LAKEFS_UI_URL",
    "LAKEFS_ENDPOINT",
    "LAKEFS_ACCESS_KEY_ID",
    "LAKEFS_SECRET_ACCESS_KEY",
    "LAKEFS_REPOSITORY",
)


@pytest.fixture
def home(monkeypatch, tmp_path):
    """An empty DFP_HOME and none of dfp's variables set."""
    monkeypatch.setenv("DFP_HOME", str(tmp_path))
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_defaults(home):
    s = load_settings()
    assert (s.dfp_env, s.dfp_dbt_target, s.dfp_feast_online) == ("local", "duckdb", "sqlite")
    assert s.dfp_feast_offline == "duckdb"
    assert s.lakefs_repository == "kronodroid" and s.lakefs_endpoint is None
    assert s.iceberg_catalog_uri() == f"sqlite:///{home / 'iceberg' / 'catalog.db'}"
    assert s.tracking_uri() == f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    assert s.feast_home() == str(home / "feast")
    assert s.f1_floor() == 0.8
    assert s.dfp_dagster_url == "http://127.0.0.1:3000"
    assert list(home.iterdir()) == []  # reading creates nothing


def test_environment_overrides(home, monkeypatch):
    monkeypatch.setenv("DFP_DBT_TARGET", "spark")
    monkeypatch.setenv("DFP_FEAST_ONLINE", "redis")
    monkeypatch.setenv("DFP_FEAST_OFFLINE", "file")
    monkeypatch.setenv("DFP_ICEBERG_CATALOG_URI", "sqlite:////tmp/x.db")
    monkeypatch.setenv("DFP_F1_FLOOR", "0.6")
    s = load_settings()
    assert (s.dfp_dbt_target, s.dfp_feast_online, s.dfp_feast_offline) == ("spark", "redis", "file")
    assert s.iceberg_catalog_uri() == "sqlite:////tmp/x.db" and s.f1_floor() == 0.6


def test_stack_env_fills_unset_values_in_local_mode_only(home, monkeypatch):
    (home / "stack.env").write_text(
        "# written by dfp stack up\nLAKEFS_ENDPOINT=http://from-file:8000\n"
        "LAKEFS_ACCESS_KEY_ID=AKFILE\nLAKEFS_SECRET_ACCESS_KEY=secret-file\n"
        "DFP_REDIS_URL=redis://:pw@127.0.0.1:6380/0\nUNRELATED=1\n"
    )
    monkeypatch.setenv("LAKEFS_ACCESS_KEY_ID", "AKENV")
    before = dict(os.environ)
    s = load_settings()
    assert s.lakefs_endpoint == "http://from-file:8000"
    assert s.lakefs_access_key_id == "AKENV"  # the environment wins
    assert s.dfp_redis_url is not None
    assert s.dfp_redis_url.get_secret_value() == "redis://:pw@127.0.0.1:6380/0"
    assert "pw@" not in repr(s)  # secrets stay out of reprs and logs
    assert settings.stack_environment()["LAKEFS_ENDPOINT"] == "http://from-file:8000"
    assert "LAKEFS_ACCESS_KEY_ID" not in settings.stack_environment()
    assert dict(os.environ) == before  # nothing was written to the environment

    for env in ("compose", "k8s"):
        monkeypatch.setenv("DFP_ENV", env)
        s = load_settings()
        assert s.lakefs_endpoint is None and s.lakefs_access_key_id == "AKENV"
        assert s.iceberg_catalog_uri() is None  # no local default either
        assert settings.stack_environment() == {}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DFP_ENV", "prod", "DFP_ENV='prod' is not one of ('local', 'compose', 'k8s')"),
        ("DFP_DBT_TARGET", "snowflake", "DFP_DBT_TARGET='snowflake' is not one of"),
        ("DFP_FEAST_ONLINE", "dynamo", "DFP_FEAST_ONLINE='dynamo' is not one of sqlite, redis"),
        ("DFP_FEAST_OFFLINE", "spark", "DFP_FEAST_OFFLINE='spark' is not one of"),
    ],
)
def test_bad_values_name_the_variable_and_value(home, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert message in str(exc.value)


def test_bad_f1_floor_fails_only_when_read(home, monkeypatch):
    monkeypatch.setenv("DFP_F1_FLOOR", "abc")
    s = load_settings()  # the rest of the settings still load
    with pytest.raises(SettingsError, match=r"DFP_F1_FLOOR='abc' is not a number in \[0, 1\]"):
        s.f1_floor()


def test_cached_until_reloaded(home, monkeypatch):
    monkeypatch.setenv("DFP_DBT_TARGET", "duckdb")
    assert settings.get_settings().dfp_dbt_target == "duckdb"
    monkeypatch.setenv("DFP_DBT_TARGET", "spark")
    assert settings.get_settings().dfp_dbt_target == "duckdb"  # read once per process
    assert settings.reload_settings().dfp_dbt_target == "spark"


def test_resources_declare_their_settings(home, monkeypatch):
    from dfp_resources.environment import build_resources, resource_run_config

    monkeypatch.setenv("DFP_FEAST_ONLINE", "redis")
    monkeypatch.setenv("DFP_DBT_TARGET", "spark")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("DFP_ICEBERG_CATALOG_URI", "postgresql+psycopg2://u:pw@pg:5432/iceberg")
    resources = build_resources(load_settings())
    feast = resources["feast"]
    assert feast.online == "redis" and feast.offline_engine == "duckdb"
    assert isinstance(feast.redis_url, dg.EnvVar) and feast.redis_url.env_var_name == (
        "DFP_REDIS_URL"
    )
    assert resources["dbt"].target == "spark"
    assert resources["mlflow"].tracking_uri == "http://mlflow:5000"
    # A URI carrying a password is a secret: the variable, not the value.
    assert isinstance(resources["iceberg"].uri, dg.EnvVar)
    lakefs = resources["lakefs"]
    for field, name in [
        ("access_key_id", "LAKEFS_ACCESS_KEY_ID"),
        ("secret_access_key", "LAKEFS_SECRET_ACCESS_KEY"),
    ]:
        value = getattr(lakefs, field)
        assert isinstance(value, dg.EnvVar) and value.env_var_name == name

    # A run (or the launchpad) may override them; EnvVars stay variable names.
    config = resource_run_config(load_settings())
    assert config["feast"]["config"]["online"] == "redis"
    assert config["feast"]["config"]["redis_url"] == {"env": "DFP_REDIS_URL"}
    assert config["dbt"]["config"]["target"] == "spark"


def test_local_resources_use_files_under_dfp_home(home):
    from dfp_resources.environment import build_resources

    resources = build_resources(load_settings())
    assert resources["iceberg"].uri == f"sqlite:///{home / 'iceberg' / 'catalog.db'}"
    assert resources["feast"].online == "sqlite" and resources["feast"].redis_url is None
    assert resources["dbt"].target == "duckdb"
    assert list(home.iterdir()) == []  # no directory made before a resource is used


def test_definitions_load_with_a_bad_f1_floor_and_the_run_default_fails(tmp_path):
    """DFP_F1_FLOOR=abc: the code location loads; building the model's run config fails,
    naming the variable and the value."""
    script = (
        "import dfp_assets.definitions as d\n"
        "from dfp_assets.kronodroid.model import MalwareModelConfig\n"
        "assert d.defs.resolve_job_def('train_malware_model')\n"
        "print('LOADED')\n"
        "MalwareModelConfig()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(DFP_F1_FLOOR="abc", DFP_HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert "LOADED" in proc.stdout, proc.stderr[-3000:]
    assert proc.returncode != 0
    assert "DFP_F1_FLOOR='abc' is not a number in [0, 1]" in proc.stderr


def test_build_cache_is_shared_by_every_clone_unless_set(home, monkeypatch, tmp_path):
    monkeypatch.delenv("DFP_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert settings.cache_dir() == tmp_path / "user" / ".cache" / "dfp"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert settings.cache_dir() == tmp_path / "xdg" / "dfp"
    monkeypatch.setenv("DFP_CACHE_DIR", str(tmp_path / "mine"))
    assert settings.cache_dir() == tmp_path / "mine"


def test_free_ports_avoid_the_ephemeral_range_and_repeat_never():
    """A port from the kernel's ephemeral range can be taken by an outgoing connection
    before the service binds it: free_port hands out ports below it, each once."""
    import socket

    from dfp.stack.services import _ephemeral_low, free_port

    ports = [free_port() for _ in range(30)]
    assert len(set(ports)) == 30
    assert all(10_000 <= p < _ephemeral_low() for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))  # free indeed
        s.listen()
        assert free_port() != ports[0]
