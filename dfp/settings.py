"""Where dfp keeps local state, and which lakeFS it talks to.

Pure configuration: no Dagster imports. Everything is environment-driven so the same code
runs on the embedded local stack, docker-compose and Kubernetes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Pinned lakeFS release built from the Go module proxy (see deploy/lakefs-build/go.mod).
LAKEFS_VERSION = "v1.84.0"

DEFAULT_REPOSITORY = "kronodroid"
DEFAULT_BRANCH = "main"


def dfp_home() -> Path:
    """Root of git-ignored local state: build caches, service data, pid files, env file."""
    return Path(os.environ.get("DFP_HOME", PROJECT_ROOT / ".dfp")).resolve()


def cache_dir() -> Path:
    """Slow-to-build artifacts (lakeFS binary, jars), kept across runs and stack resets."""
    return Path(os.environ.get("DFP_CACHE_DIR", dfp_home() / "cache")).resolve()


def stack_env_file() -> Path:
    """Credentials and endpoints written by `dfp stack up`, read by resources in local mode."""
    return dfp_home() / "stack.env"


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a KEY=VALUE file (comments and blank lines ignored)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def load_stack_env() -> None:
    """Fill unset LAKEFS_* etc. variables from the local stack's env file.

    Explicit environment always wins, so docker-compose / k8s settings are never overridden.
    """
    for key, value in read_env_file(stack_env_file()).items():
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class LakeFSSettings:
    endpoint: str
    access_key_id: str
    secret_access_key: str
    repository: str = DEFAULT_REPOSITORY

    @classmethod
    def from_env(cls) -> LakeFSSettings:
        load_stack_env()
        missing = [
            name
            for name in ("LAKEFS_ENDPOINT", "LAKEFS_ACCESS_KEY_ID", "LAKEFS_SECRET_ACCESS_KEY")
            if not os.environ.get(name)
        ]
        if missing:
            raise RuntimeError(
                f"lakeFS is not configured: {', '.join(missing)} unset. "
                "Run `dfp stack up` (local) or set them in the environment."
            )
        return cls(
            endpoint=os.environ["LAKEFS_ENDPOINT"],
            access_key_id=os.environ["LAKEFS_ACCESS_KEY_ID"],
            secret_access_key=os.environ["LAKEFS_SECRET_ACCESS_KEY"],
            repository=os.environ.get("LAKEFS_REPOSITORY", DEFAULT_REPOSITORY),
        )
