"""The device-farm gateway: the only door from devices to Dagster's REST API.

Dagster's open-source webserver does not authenticate `report_asset_materialization`, so
devices never talk to it directly. The gateway listens on its own port and accepts one call,
`POST /v1/device-benchmarks` with `Authorization: Bearer $DFP_DEVICEFARM_TOKEN` and a
`dfp.device_benchmark/v1` upload as the body. It checks the token, the size, the schema and
that the branch exists in lakeFS; only then does it report one `device_benchmarks`
materialization for the branch's partition to Dagster. Anything rejected records nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dfp.devicefarm.farm import BENCHMARK_ASSET, materialization_metadata
from mobile.records import UploadRejected, parse_upload

MAX_BODY_BYTES = 1_048_576


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it exceeds `limit` (read no further than that)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    dagster_url: str,
    token: str,
    branch_exists: Callable[[str], bool],
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    timeout: float = 30.0,
) -> Starlette:
    if len(token) < 16:
        raise ValueError("the gateway needs a token of at least 16 characters")
    report_url = f"{dagster_url.rstrip('/')}/report_asset_materialization/{BENCHMARK_ASSET}"
    expected = f"Bearer {token}".encode()

    async def device_benchmarks(request: Request) -> JSONResponse:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return _error(401, "missing or wrong bearer token")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return _error(413, f"body of {declared} bytes exceeds the {max_body_bytes}-byte limit")
        body = await _read_body(request, max_body_bytes)
        if body is None:
            return _error(413, f"body exceeds the {max_body_bytes}-byte limit")
        try:
            upload = parse_upload(body, source="request body", max_bytes=max_body_bytes)
        except UploadRejected as exc:
            return _error(422, str(exc))
        if not branch_exists(upload.branch):
            return _error(404, f"lakeFS branch {upload.branch!r} does not exist")
        payload = {
            "partition": upload.branch,
            "description": f"{len(upload.records)} benchmark record(s) from "
            f"{upload.device.name} via the device-farm gateway",
            "data_version": hashlib.sha256(body).hexdigest()[:16],
            "metadata": materialization_metadata(upload, source=f"rest:{upload.device.name}"),
        }
        try:
            reply = requests.post(report_url, json=payload, timeout=timeout)
        except requests.RequestException as exc:
            return _error(502, f"Dagster at {dagster_url} unreachable: {exc}")
        if reply.status_code != 200:
            return _error(
                502, f"Dagster refused the report ({reply.status_code}): {reply.text[:500]}"
            )
        return JSONResponse(
            {
                "recorded": len(upload.records),
                "asset": BENCHMARK_ASSET,
                "partition": upload.branch,
                "device": upload.device.name,
            }
        )

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/v1/device-benchmarks", device_benchmarks, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )


def serve(
    dagster_url: str, token: str, branch_exists: Callable[[str], bool], host: str, port: int
) -> None:
    import uvicorn

    uvicorn.run(
        create_app(dagster_url, token, branch_exists), host=host, port=port, log_level="info"
    )
