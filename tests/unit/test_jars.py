"""Jar fetching against a loopback server laid out like Maven Central."""

import functools
import hashlib
import http.server
import os
import threading

import pytest

from dfp.stack.jars import JarError, MavenJar, ensure_jars


@pytest.fixture
def maven_repo(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    requests = []
    original = handler.func.do_GET

    def counting_get(self):
        requests.append(self.path)
        return original(self)

    monkeypatch.setattr(http.server.SimpleHTTPRequestHandler, "do_GET", counting_get)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DFP_MAVEN_REPOSITORY", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("DFP_CACHE_DIR", str(tmp_path / "cache"))
    yield root, requests
    server.shutdown()


def publish(root, coordinate: str, body: bytes, sha1: str | None = None) -> None:
    jar = MavenJar.parse(coordinate)
    path = root / jar.url("").lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    (path.parent / (path.name + ".sha1")).write_text(sha1 or hashlib.sha1(body).hexdigest())


def test_fetches_verifies_and_caches(maven_repo, tmp_path):
    root, requests = maven_repo
    publish(root, "org.example:thing:1.2", b"jar bytes")
    [path] = ensure_jars(["org.example:thing:1.2"], log=lambda m: None)
    assert path == tmp_path / "cache" / "jars" / "thing-1.2.jar"
    assert path.read_bytes() == b"jar bytes"
    assert requests == [
        "/org/example/thing/1.2/thing-1.2.jar",
        "/org/example/thing/1.2/thing-1.2.jar.sha1",
    ]
    ensure_jars(["org.example:thing:1.2"], log=lambda m: None)
    assert len(requests) == 2  # cached: no second download


def test_one_line_per_jar_fetched_and_verified_none_for_cached(maven_repo):
    root, _ = maven_repo
    publish(root, "org.example:one:1.0", b"x" * 2**20)
    publish(root, "org.example:two:2.0", b"y" * 100)
    said: list[str] = []
    ensure_jars(["org.example:one:1.0"], log=said.append)
    said.clear()
    ensure_jars(["org.example:one:1.0", "org.example:two:2.0"], log=said.append)
    assert (
        said[0] == f"jar 1/1 fetching org.example:two:2.0 from {os.environ['DFP_MAVEN_REPOSITORY']}"
    )
    assert said[1].startswith("jar 1/1 two-2.0.jar: 0.0 MB, sha1 verified (")
    assert len(said) == 2  # one-1.0 was cached: silent


def test_checksum_mismatch_is_refused_and_nothing_cached(maven_repo, tmp_path):
    root, _ = maven_repo
    publish(root, "org.example:bad:1.0", b"tampered", sha1="0" * 40)
    with pytest.raises(JarError, match="checksum mismatch"):
        ensure_jars(["org.example:bad:1.0"], log=lambda m: None)
    assert not list((tmp_path / "cache" / "jars").glob("bad-*"))


def test_missing_artifact_and_bad_coordinate(maven_repo):
    with pytest.raises(JarError, match="could not fetch"):
        ensure_jars(["org.example:absent:9.9"], log=lambda m: None)
    with pytest.raises(JarError, match="coordinate"):
        ensure_jars(["not-a-coordinate"], log=lambda m: None)


def test_catalog_uri_to_jdbc():
    from dfp.lake.spark import jdbc_catalog_properties

    assert jdbc_catalog_properties("sqlite:////tmp/x/catalog.db") == {
        "uri": "jdbc:sqlite:/tmp/x/catalog.db"
    }
    assert jdbc_catalog_properties("postgresql+psycopg2://dfp:s3cret@127.0.0.1:5433/dagster") == {
        "uri": "jdbc:postgresql://127.0.0.1:5433/dagster",
        "jdbc.user": "dfp",
        "jdbc.password": "s3cret",
    }
    with pytest.raises(ValueError, match="mysql"):
        jdbc_catalog_properties("mysql://h/db")


def test_pinned_sha1_must_match_too(maven_repo, tmp_path):
    """A lock file's SHA-1 is checked beside Central's: a jar republished with a matching
    .sha1 but other bytes than the lock recorded is refused."""
    root, _ = maven_repo
    publish(root, "org.example:locked:1.0", b"new bytes")
    pinned = {"org.example:locked:1.0": hashlib.sha1(b"old bytes").hexdigest()}
    with pytest.raises(JarError, match="differs from the pinned"):
        ensure_jars(["org.example:locked:1.0"], log=lambda m: None, pinned_sha1=pinned)
    assert not list((tmp_path / "cache" / "jars").glob("locked-*"))
    pinned = {"org.example:locked:1.0": hashlib.sha1(b"new bytes").hexdigest()}
    [path] = ensure_jars(["org.example:locked:1.0"], log=lambda m: None, pinned_sha1=pinned)
    assert path.read_bytes() == b"new bytes"


def test_classifier_coordinates():
    jar = MavenJar.parse("io.netty:netty-transport-native-epoll:4.1.0:linux-x86_64")
    assert jar.file_name == "netty-transport-native-epoll-4.1.0-linux-x86_64.jar"
    assert jar.coordinate == "io.netty:netty-transport-native-epoll:4.1.0:linux-x86_64"
    assert jar.url("R").endswith("/4.1.0/netty-transport-native-epoll-4.1.0-linux-x86_64.jar")
