"""Java jars from Maven Central (Spark's Iceberg runtime, S3A, JDBC drivers), cached.

Fetched once into DFP_CACHE_DIR/jars and verified against Central's published SHA-1; never
committed. No Dagster imports.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dfp import settings

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"


class JarError(RuntimeError):
    pass


@dataclass(frozen=True)
class MavenJar:
    group: str
    artifact: str
    version: str
    classifier: str = ""

    @classmethod
    def parse(cls, coordinate: str) -> MavenJar:
        parts = coordinate.split(":")
        if len(parts) not in (3, 4) or not all(parts):
            raise JarError(f"not a group:artifact:version[:classifier] coordinate: {coordinate!r}")
        return cls(*parts)

    @property
    def coordinate(self) -> str:
        base = f"{self.group}:{self.artifact}:{self.version}"
        return f"{base}:{self.classifier}" if self.classifier else base

    @property
    def file_name(self) -> str:
        suffix = f"-{self.classifier}" if self.classifier else ""
        return f"{self.artifact}-{self.version}{suffix}.jar"

    def url(self, repository: str = MAVEN_CENTRAL) -> str:
        return (
            f"{repository}/{self.group.replace('.', '/')}/{self.artifact}/{self.version}/"
            f"{self.file_name}"
        )


def jar_dir() -> Path:
    return settings.cache_dir() / "jars"


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.read()
    except OSError as exc:
        raise JarError(f"could not fetch {url}: {exc}") from exc


def ensure_jars(
    coordinates: list[str],
    log: Callable[[str], None] = print,
    pinned_sha1: dict[str, str] | None = None,
) -> list[Path]:
    """Paths of the jars, downloading (and checksum-verifying) the missing ones; one line per
    jar fetched and one when it is verified (a cached jar says nothing: every Spark session
    calls this). `pinned_sha1` (coordinate → SHA-1, from a lock file) must match too."""
    pinned_sha1 = pinned_sha1 or {}
    repository = os.environ.get("DFP_MAVEN_REPOSITORY", MAVEN_CENTRAL).rstrip("/")
    target = jar_dir()
    target.mkdir(parents=True, exist_ok=True)
    jars = [MavenJar.parse(coordinate) for coordinate in coordinates]
    missing = [jar for jar in jars if not (target / jar.file_name).exists()]
    paths = []
    for jar in jars:
        path = target / jar.file_name
        if not path.exists():
            coordinate = jar.coordinate
            url = jar.url(repository)
            number = f"{missing.index(jar) + 1}/{len(missing)}"
            log(f"jar {number} fetching {coordinate} from {repository}")
            started = time.monotonic()
            data = _fetch(url)
            expected = _fetch(url + ".sha1").decode().split()[0].strip().lower()
            actual = hashlib.sha1(data).hexdigest()  # noqa: S324 - Maven's published checksum
            if actual != expected:
                raise JarError(f"checksum mismatch for {coordinate}: {actual} != {expected}")
            pinned = pinned_sha1.get(coordinate)
            if pinned is not None and pinned.lower() != actual:
                raise JarError(f"{coordinate}: SHA-1 {actual} differs from the pinned {pinned}")
            partial = path.with_suffix(".partial")
            partial.write_bytes(data)
            partial.rename(path)
            log(
                f"jar {number} {jar.file_name}: {len(data) / 2**20:.1f} MB, sha1 verified "
                f"({time.monotonic() - started:.1f}s)"
            )
        paths.append(path)
    return paths
