"""Links into lakeFS's web UI: a commit's page, and the objects at a ref and path.

Pure string building (no lakeFS calls, no Dagster). The base is the browser-facing address of
lakeFS (`DfpSettings.lakefs_ui_url()`), which differs from the API endpoint on compose / k8s,
where the endpoint is a host name only the containers resolve. The routes are the UI's own
(webui/src/pages/index.jsx): `/repositories/:repo/commits/:commit`, `/repositories/:repo/objects`
(a listing, `path` a prefix) and `/repositories/:repo/object` (one object's viewer).
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

API_SUFFIX = "/api/v1"


def ui_base(endpoint: str) -> str:
    """The UI's base URL on the same server as `endpoint` (the UI is served from its root)."""
    base = endpoint.rstrip("/")
    if base.endswith(API_SUFFIX):
        base = base[: -len(API_SUFFIX)]
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"lakeFS UI base {endpoint!r} is not an http(s) URL")
    return base


def _repository_url(base: str, repository: str) -> str:
    if not repository:
        raise ValueError("a lakeFS UI link needs a repository name")
    return f"{base.rstrip('/')}/repositories/{quote(repository, safe='')}"


def commit_url(base: str, repository: str, commit_id: str) -> str:
    """The commit's page: message, metadata (with its "Open Dagster UI" button) and diff."""
    if not commit_id:
        raise ValueError("a lakeFS commit link needs a commit id")
    return f"{_repository_url(base, repository)}/commits/{quote(commit_id, safe='')}"


def objects_url(base: str, repository: str, ref: str, path: str = "") -> str:
    """What is at `path` on `ref` (a branch, tag or commit id): the listing of a prefix
    (empty or ending in "/"), else the viewer of that one object."""
    if not ref:
        raise ValueError("a lakeFS objects link needs a ref")
    page = "objects" if path == "" or path.endswith("/") else "object"
    query = urlencode({"ref": ref, "path": path}, quote_via=quote, safe="/")
    return f"{_repository_url(base, repository)}/{page}?{query}"
