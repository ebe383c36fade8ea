"""The lakeFS binary lookup: explicit, cached, or a clear message on how to get one."""

import os
import sys
from pathlib import Path

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
    monkeypatch.setenv("DFP_REDIS_PORT", str(stack.free_port()))
    monkeypatch.setattr(stack, "redis_server_bin", lambda: tmp_path / "redis-server")
    local = stack.LocalStack(tmp_path)
    local._prepare_redis()
    conf = tmp_path / "state" / "redis" / "redis.conf"
    assert oct(conf.stat().st_mode & 0o777) == "0o600"
    password = stack.settings.read_env_file(local.env_file)["DFP_REDIS_PASSWORD"]
    assert f"requirepass {password}" in conf.read_text()
    local._prepare_redis()  # a second prepare keeps the password
    assert stack.settings.read_env_file(local.env_file)["DFP_REDIS_PASSWORD"] == password


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


# -- build progress (recorded `go build -v` output) --------------------------------------------
GO_BUILD_DATA = Path(__file__).parent / "data" / "go_build"


class FakeClock:
    """The build starts at 100 s; the test moves `now` before feeding each line."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _recorded(name: str) -> list[str]:
    return (GO_BUILD_DATA / name).read_text().splitlines(keepends=True)


def test_go_build_progress_one_line_per_module_and_package_in_order():
    said: list[str] = []
    clock = FakeClock()
    progress = stack.GoBuildProgress(said.append, clock=clock)
    lines = _recorded("build_v.txt")
    for i, line in enumerate(lines):
        clock.now = 100.0 + 2 * i  # line i arrives 2i seconds into the build
        progress.feed(line)
    assert len(said) == len(lines) == 114
    assert said[0] == "[    0s] module    1 downloaded github.com/google/uuid v1.6.0"
    assert said[1] == "[    2s] package    1 compiled internal/unsafeheader"
    assert said[2] == "[    4s] package    2 compiled internal/goarch"
    assert said[-1] == "[  226s] package  113 compiled github.com/google/uuid"
    # Counters and seconds only grow, in the order the toolchain wrote the lines.
    packages = [line for line in said if " package " in line]
    assert [int(p.split()[3]) for p in packages] == list(range(1, 114))
    seconds = [int(line[1:6]) for line in said]
    assert seconds == sorted(seconds)
    assert progress.summary() == "1 modules downloaded, 113 packages compiled"


def test_go_build_progress_passes_errors_through_and_keeps_them_for_the_message():
    said: list[str] = []
    progress = stack.GoBuildProgress(said.append, clock=FakeClock(), tail_lines=3)
    for line in _recorded("build_v_fail.txt"):
        progress.feed(line)
    progress.quiet()
    assert said == [
        "[    0s] package    1 compiled example.local/m",
        "[    0s] # example.local/m",  # "# pkg" heads a compile error, it is no package
        "[    0s] ./main.go:8:32: undefined: uuid.NewStringX",
        "[    0s] still building (0 modules downloaded, 1 packages compiled so far)",
    ]
    assert progress.tail_text().splitlines() == [
        "example.local/m",
        "# example.local/m",
        "./main.go:8:32: undefined: uuid.NewStringX",
    ]


@pytest.mark.timeout(60)  # a broken hand-over would leave the child blocked on its FIFO
def test_stream_lines_hands_over_each_line_as_written_and_reports_silence(tmp_path):
    # The child writes a line, then blocks on a FIFO that only the silence callback opens:
    # the line must have arrived before the child ends, and silence must be noticed.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    child = (
        "import sys; print('first', flush=True); "
        f"open({str(fifo)!r}).read(); print('second'); sys.exit(3)"
    )
    events: list[str] = []
    released: list[bool] = []

    def quiet() -> None:
        events.append("quiet")
        # Release the child once its first line is in (Python's start-up may be quiet too).
        if "first\n" in events and not released:
            released.append(True)
            with open(fifo, "w") as f:
                f.write("go")

    code = stack._stream_lines(
        [sys.executable, "-c", child], tmp_path, dict(os.environ), events.append, quiet, 0.05
    )
    assert code == 3
    lines = [e for e in events if e != "quiet"]
    assert lines == ["first\n", "second\n"]
    # "second" could only be written after a silence reported while the child waited.
    assert "quiet" in events[events.index("first\n") : events.index("second\n")]


FAKE_GO = """#!{python}
import sys
from pathlib import Path
sys.stdout.write(Path({log!r}).read_text())
if {fail!r}:
    sys.exit(1)
Path(sys.argv[sys.argv.index("-o") + 1]).write_text("built")
"""


def _fake_go(tmp_path, monkeypatch, recorded: str, fail: bool) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text(
        FAKE_GO.format(python=sys.executable, log=str(GO_BUILD_DATA / recorded), fail=fail)
    )
    go.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("DFP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LAKEFS_BIN", raising=False)
    monkeypatch.setenv("DFP_LAKEFS_UI", "off")  # the go build alone (the UI: tests below)


def test_build_streams_progress_then_caches_the_binary(tmp_path, monkeypatch):
    _fake_go(tmp_path, monkeypatch, "build_v.txt", fail=False)
    said: list[str] = []
    binary = stack.ensure_lakefs_binary(log=said.append)
    assert binary == stack.lakefs_binary_path() and binary.read_text() == "built"
    assert said[0].startswith("building lakeFS")
    assert "module    1 downloaded github.com/google/uuid v1.6.0" in said[1]
    assert "package  113 compiled github.com/google/uuid" in said[-2]
    assert said[-1].startswith(f"built {binary} in ")
    assert said[-1].endswith("(1 modules downloaded, 113 packages compiled)")
    assert stack.ensure_lakefs_binary(log=said.append) == binary  # cached: no second build
    assert len(said) == 116


def test_failed_build_raises_with_the_last_output_lines_and_caches_nothing(tmp_path, monkeypatch):
    _fake_go(tmp_path, monkeypatch, "build_v_fail.txt", fail=True)
    said: list[str] = []
    with pytest.raises(stack.StackError) as err:
        stack.ensure_lakefs_binary(log=said.append)
    message = str(err.value)
    assert "go build exited 1" in message
    assert message.endswith("# example.local/m\n./main.go:8:32: undefined: uuid.NewStringX")
    assert said[-1].endswith("./main.go:8:32: undefined: uuid.NewStringX")
    assert not stack.lakefs_binary_path().exists()


# -- lakeFS with its web UI ----------------------------------------------------------------------
UI_FAKE_GO = """#!{python}
import json, shutil, sys
from pathlib import Path
args = sys.argv[1:]
if args[:3] == ["mod", "download", "-json"]:
    print(json.dumps({{"Dir": {module!r}}}))
elif args[:2] == ["mod", "edit"]:
    Path("go.mod").write_text(Path("go.mod").read_text() + args[2] + "\\n")
elif args[0] == "build":
    # What the link would embed: the copy's dist, and the go.mod that points at the copy.
    dist = Path("lakefs-src/webui/dist/index.html").read_text()
    out = Path(args[args.index("-o") + 1])
    out.write_text(dist + "|" + Path("go.mod").read_text().splitlines()[-1])
"""

FAKE_NPM = """#!{python}
import sys
from pathlib import Path
with open({calls!r}, "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["run", "build"]:
    Path("dist").mkdir(exist_ok=True)
    Path("dist/index.html").write_text('<div id="root"></div>')
"""

FAKE_NODE = """#!/bin/sh
echo {version}
"""


def _fake_ui_toolchain(tmp_path, monkeypatch, node_version="v20.20.2"):
    module = tmp_path / "gomodcache" / "lakefs@v1.84.0"
    (module / "webui" / "dist").mkdir(parents=True)
    (module / "webui" / "dist" / ".gitkeep").write_text("")
    (module / "webui" / "package-lock.json").write_text('{"lockfileVersion": 3}')
    (module / "webui" / "content.go").write_text("package webui\n")
    for path in [module, *module.rglob("*")]:  # GOMODCACHE is read-only
        path.chmod(0o555 if path.is_dir() else 0o444)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "npm-calls.txt"
    for name, text in (
        ("go", UI_FAKE_GO.format(python=sys.executable, module=str(module))),
        ("npm", FAKE_NPM.format(python=sys.executable, calls=str(calls))),
        ("node", FAKE_NODE.format(version=node_version)),
    ):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("DFP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LAKEFS_BIN", raising=False)
    monkeypatch.delenv("DFP_LAKEFS_UI", raising=False)
    return module, calls


def test_default_build_embeds_the_web_ui_built_from_the_module_and_caches_its_dist(
    tmp_path, monkeypatch
):
    module, calls = _fake_ui_toolchain(tmp_path, monkeypatch)
    said: list[str] = []
    binary = stack.ensure_lakefs_binary(log=said.append)
    assert binary == stack.lakefs_binary_path() and binary.parent.name == "lakefs-v1.84.0-ui"
    # The binary was linked from a writable copy of the module whose dist/ is the npm build,
    # through a go.mod that replaces the module by that copy.
    assert binary.read_text() == (
        '<div id="root"></div>|-replace=github.com/treeverse/lakefs=./lakefs-src'
    )
    assert calls.read_text().splitlines() == [
        "ci --no-audit --no-fund --loglevel=error",
        "run build",
    ]
    assert not (binary.parent / "ui-build").exists()  # the work copy is removed
    assert (module / "webui" / "dist" / ".gitkeep").exists()  # the module is untouched

    # A second build (e.g. a new Go flag) reuses the dist cached by the lockfile's digest.
    binary.unlink()
    stack.ensure_lakefs_binary(log=said.append)
    assert len(calls.read_text().splitlines()) == 2
    assert any(line.startswith("lakeFS web UI: cached build") for line in said)


def test_old_node_is_refused_with_the_way_out(tmp_path, monkeypatch):
    _fake_ui_toolchain(tmp_path, monkeypatch, node_version="v18.20.4")
    with pytest.raises(stack.StackError) as err:
        stack.ensure_lakefs_binary(log=lambda msg: None)
    assert "node v18.20.4 is too old" in str(err.value)
    assert "DFP_LAKEFS_UI=off" in str(err.value)
    assert not stack.lakefs_binary_path().exists()


def test_ui_switch_must_be_on_or_off(monkeypatch):
    from dfp.stack import lakefs_ui

    monkeypatch.setenv("DFP_LAKEFS_UI", "maybe")
    with pytest.raises(lakefs_ui.UIBuildError, match="DFP_LAKEFS_UI='maybe'"):
        lakefs_ui.ui_enabled()
    monkeypatch.setenv("DFP_LAKEFS_UI", "off")
    assert stack.lakefs_binary_path().parent.name == "lakefs-v1.84.0"
