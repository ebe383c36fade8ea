"""The lakeFS binary lookup: explicit, cached, or a clear message on how to get one."""

import pytest

from dfp.stack import services as stack


def test_no_go_and_no_binary_says_how_to_get_lakefs(tmp_path, monkeypatch):
    monkeypatch.setenv("DFP_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LAKEFS_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(stack.StackError) as err:
        stack.ensure_lakefs_binary(log=lambda msg: None)
    message = str(err.value)
    assert "no Go toolchain" in message
    assert "LAKEFS_BIN" in message
    assert "Go module proxy" in message


def test_explicit_binary_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEFS_BIN", str(tmp_path / "nope"))
    with pytest.raises(stack.StackError, match="does not exist"):
        stack.ensure_lakefs_binary()
    binary = tmp_path / "lakefs"
    binary.write_text("#!/bin/sh\n")
    monkeypatch.setenv("LAKEFS_BIN", str(binary))
    assert stack.ensure_lakefs_binary() == binary


def test_cached_binary_is_reused_without_building(tmp_path, monkeypatch):
    monkeypatch.delenv("LAKEFS_BIN", raising=False)
    monkeypatch.setenv("DFP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # a build would fail: no go
    cached = stack.lakefs_binary_path()
    cached.parent.mkdir(parents=True)
    cached.write_text("cached")
    assert stack.ensure_lakefs_binary() == cached


# -- Redis (the online store's server) --------------------------------------------------------
def test_redis_config_is_loopback_protected_and_not_persistent(tmp_path):
    conf = stack.redis_config(6380, "dfpsecret", tmp_path).splitlines()
    assert "bind 127.0.0.1" in conf
    assert "port 6380" in conf
    assert "protected-mode yes" in conf
    assert "requirepass dfpsecret" in conf
    assert 'save ""' in conf and "appendonly no" in conf
    assert f"dir {tmp_path}" in conf
    for bad in ("", "with space", 'quo"te'):
        with pytest.raises(stack.StackError, match="password"):
            stack.redis_config(6380, bad, tmp_path)


def test_redis_password_and_url_suit_redis_py_and_feast():
    from dfp.kronodroid.features import RedisOnline

    password = stack.redis_password()
    assert password.isalnum() and password.startswith("dfp") and len(password) >= 40
    assert password != stack.redis_password()
    url = stack.redis_url(6390, password)
    assert url == f"redis://:{password}@127.0.0.1:6390/0"
    conn = RedisOnline(url=url).connection_string()
    assert conn == f"127.0.0.1:6390,password={password},db=0"


def test_redis_url_is_in_stack_env_only_while_enabled():
    creds = {"LAKEFS_ACCESS_KEY_ID": "A", "DFP_REDIS_PASSWORD": "dfpx"}
    on = stack.redis_env(creds, enabled=True, port=6381)
    assert on["DFP_REDIS_URL"] == "redis://:dfpx@127.0.0.1:6381/0"
    assert on["LAKEFS_ACCESS_KEY_ID"] == "A"
    off = stack.redis_env(on, enabled=False, port=6381)
    assert "DFP_REDIS_URL" not in off and off["DFP_REDIS_PASSWORD"] == "dfpx"


@pytest.mark.parametrize(
    ("services", "expected"),
    [
        ("lakefs", ["lakefs"]),
        ("lakefs,redis", ["lakefs", "redis"]),
        ("redis", ["lakefs", "redis"]),
        (" lakefs , redis,postgres ", ["lakefs", "postgres", "redis"]),
    ],
)
def test_redis_is_an_optional_service(tmp_path, monkeypatch, services, expected):
    monkeypatch.setenv("DFP_STACK_SERVICES", services)
    monkeypatch.setenv("DFP_REDIS_PORT", "6999")
    local = stack.LocalStack(tmp_path)
    assert [s.name for s in local.services] == expected
    assert local.redis.url == "redis://127.0.0.1:6999"
    assert local.redis.pid_file == tmp_path / "state" / "redis" / "redis.pid"


def test_redis_default_port_and_unknown_services(tmp_path, monkeypatch):
    monkeypatch.delenv("DFP_REDIS_PORT", raising=False)
    assert stack.LocalStack(tmp_path).redis_port == 6380
    monkeypatch.setenv("DFP_STACK_SERVICES", "lakefs,redis,memcached")
    with pytest.raises(stack.StackError, match="memcached"):
        _ = stack.LocalStack(tmp_path).services


def test_missing_redis_server_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(stack, "REDIS_SERVER", tmp_path / "nope")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(stack.StackError, match="apt-get install redis-server"):
        stack.redis_server_bin()


def test_redis_config_file_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("DFP_REDIS_PORT", str(_free_port()))
    monkeypatch.setattr(stack, "redis_server_bin", lambda: tmp_path / "redis-server")
    local = stack.LocalStack(tmp_path)
    local._prepare_redis()
    conf = tmp_path / "state" / "redis" / "redis.conf"
    assert oct(conf.stat().st_mode & 0o777) == "0o600"
    password = stack.settings.read_env_file(local.env_file)["DFP_REDIS_PASSWORD"]
    assert f"requirepass {password}" in conf.read_text()
    local._prepare_redis()  # a second prepare keeps the password
    assert stack.settings.read_env_file(local.env_file)["DFP_REDIS_PASSWORD"] == password


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_server_settings(tmp_path):
    from dfp.stack.services import mlflow_env, mlflow_server_argv

    argv = mlflow_server_argv(5511, tmp_path)
    assert argv[1:6] == ["server", "--host", "127.0.0.1", "--port", "5511"]
    assert f"sqlite:///{tmp_path / 'mlflow.db'}" in argv
    assert str(tmp_path / "artifacts") in argv
    creds = {"LAKEFS_ENDPOINT": "x", "MLFLOW_TRACKING_URI": "http://old"}
    assert mlflow_env(creds, enabled=True, port=5511)["MLFLOW_TRACKING_URI"] == (
        "http://127.0.0.1:5511"
    )
    assert "MLFLOW_TRACKING_URI" not in mlflow_env(creds, enabled=False, port=5511)
