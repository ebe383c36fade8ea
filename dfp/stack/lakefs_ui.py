"""lakeFS's web UI, built from the sources its Go module carries and embedded in the binary.

The lakeFS module holds the whole `webui/` (an npm + vite project with its lockfile) but an
empty `webui/dist/`, which `//go:embed` turns into a server answering "UI Not Built". Go's
`-overlay` refuses files under GOMODCACHE, so the UI build uses a writable copy of the module
with `dist/` filled in, and a build directory (the wrapper's go.mod, go.sum and main.go) whose
go.mod replaces the module by that copy. Go's build cache keeps the other ~1,400 packages, so
after a first build only the embedding package and the link run again.

`dist/` is cached by (lakeFS version, package-lock digest): the same lockfile gives the same
files (vite's build is deterministic), so a cached dist is as good as a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from dfp import settings

LAKEFS_MODULE = "github.com/treeverse/lakefs"
#: Vite 7 (lakeFS's webui) needs node >= 20.19.
MIN_NODE = (20, 19)
UI_ENV = "DFP_LAKEFS_UI"


class UIBuildError(RuntimeError):
    pass


def ui_enabled() -> bool:
    """The built-UI binary is the default; DFP_LAKEFS_UI=off builds lakeFS without it."""
    value = os.environ.get(UI_ENV, "on").strip().lower()
    if value not in ("on", "off"):
        raise UIBuildError(f"{UI_ENV}={value!r}: want 'on' or 'off'")
    return value == "on"


def binary_dir_name() -> str:
    return f"lakefs-{settings.LAKEFS_VERSION}" + ("-ui" if ui_enabled() else "")


def lock_digest(webui: Path) -> str:
    return hashlib.sha256((webui / "package-lock.json").read_bytes()).hexdigest()[:16]


def dist_cache_dir(digest: str) -> Path:
    return settings.cache_dir() / f"lakefs-webui-{settings.LAKEFS_VERSION}-{digest}" / "dist"


def parse_node_version(text: str) -> tuple[int, int]:
    match = re.match(r"v?(\d+)\.(\d+)", text.strip())
    if match is None:
        raise UIBuildError(f"cannot read node's version from {text!r}")
    return int(match.group(1)), int(match.group(2))


def _node_and_npm() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise UIBuildError(
            f"building lakeFS's web UI needs node >= {MIN_NODE[0]}.{MIN_NODE[1]} and npm on "
            f"PATH (or set {UI_ENV}=off for a lakeFS without its UI)"
        )
    found = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    if parse_node_version(found) < MIN_NODE:
        raise UIBuildError(
            f"node {found.strip()} is too old for lakeFS's web UI (vite needs >= "
            f"{MIN_NODE[0]}.{MIN_NODE[1]}); install a newer node or set {UI_ENV}=off"
        )
    return node, npm


def module_dir(go: str, build_dir: Path, env: dict[str, str]) -> Path:
    """The lakeFS module's source in GOMODCACHE (downloaded through the module proxy)."""
    done = subprocess.run(
        [go, "mod", "download", "-json", f"{LAKEFS_MODULE}@{settings.LAKEFS_VERSION}"],
        cwd=build_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    try:
        info = json.loads(done.stdout)
    except json.JSONDecodeError:
        info = {}
    if done.returncode != 0 or not info.get("Dir"):
        raise UIBuildError(
            f"go mod download {LAKEFS_MODULE}@{settings.LAKEFS_VERSION} failed "
            f"(exit {done.returncode}): {info.get('Error') or done.stderr.strip()[-2000:]}"
        )
    return Path(info["Dir"])


def _make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _run(argv: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-30:]
        raise UIBuildError(f"{what} failed (exit {done.returncode}):\n" + "\n".join(tail))


def build_dist(webui: Path, log: Callable[[str], None]) -> Path:
    """`dist/` for this lockfile: from the cache, else `npm ci` + `npm run build` (cached)."""
    cached = dist_cache_dir(lock_digest(webui))
    if (cached / "index.html").is_file():
        log(f"lakeFS web UI: cached build {cached}")
        return cached
    _, npm = _node_and_npm()
    env = {**os.environ, "CI": "true", "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
    log("lakeFS web UI: npm ci (its package-lock.json; only the npm registry is contacted)")
    _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], webui, env, "npm ci")
    log("lakeFS web UI: npm run build (vite)")
    _run([npm, "run", "build"], webui, env, "npm run build")
    built = webui / "dist"
    if not (built / "index.html").is_file():
        raise UIBuildError(f"npm run build left no {built / 'index.html'}")
    partial = cached.with_name("dist.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(built, partial)
    partial.rename(cached)
    return cached


def prepare_build_dir(
    go: str, wrapper_dir: Path, work: Path, env: dict[str, str], log: Callable[[str], None]
) -> Path:
    """A build directory for the wrapper whose lakeFS module has its web UI in `dist/`."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    source = work / "lakefs-src"
    shutil.copytree(module_dir(go, wrapper_dir, env), source, symlinks=True)
    _make_writable(source)  # GOMODCACHE files are read-only
    dist = build_dist(source / "webui", log)
    shutil.rmtree(source / "webui" / "dist")
    shutil.rmtree(source / "webui" / "node_modules", ignore_errors=True)  # not embedded
    shutil.copytree(dist, source / "webui" / "dist")
    for name in ("go.mod", "go.sum", "main.go"):
        shutil.copy2(wrapper_dir / name, work / name)
    _run(
        [go, "mod", "edit", f"-replace={LAKEFS_MODULE}=./lakefs-src"],
        work,
        env,
        "go mod edit -replace",
    )
    return work
