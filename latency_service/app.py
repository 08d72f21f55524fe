"""The latency service: model file in, latency and memory on this host's device out.

One measurement at a time per device (an asyncio lock in front of a worker thread), so
results never interleave; answers are cached in SQLite by model hash and device settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import tempfile
import time
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from devices.errors import MeasurementError
from devices.measure import measure_file, sniff_format
from devices.profile import DeviceProfile
from latency_service.cache import ResultCache

STATUS_FOR_KIND = {
    "empty_file": 400,
    "not_a_model": 400,
    "corrupt_model": 400,
    "bad_input_shape": 422,
    "unsupported_op": 422,
    "runtime_crash": 422,
    "timeout": 504,
    "device_unavailable": 503,
}


def parse_shape(text: str | None) -> list[int] | None:
    if text is None or not text.strip():
        return None
    try:
        values = json.loads(text) if text.strip().startswith("[") else [int(v) for v in text.split(",")]
    except (ValueError, json.JSONDecodeError):
        raise HTTPException(422, f"input_shape must look like 1,3,224,224 (got {text[:60]!r})") from None
    if not isinstance(values, list) or not 1 <= len(values) <= 6 or not all(isinstance(v, int) and 0 < v <= 100_000 for v in values):
        raise HTTPException(422, f"input_shape must be 1 to 6 positive integers (got {text[:60]!r})")
    if _product(values) > 64 * 1024 * 1024:
        raise HTTPException(422, f"input_shape {values} is too large (over 64M elements)")
    return values


def _product(values: list[int]) -> int:
    total = 1
    for v in values:
        total *= v
    return total


def create_app(
    profile: DeviceProfile,
    token: str | None = None,
    db_path: str | Path = "latency-cache.sqlite",
    max_upload_mb: float = 200.0,
    queue_timeout_s: float = 1800.0,
) -> FastAPI:
    cache = ResultCache(db_path)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        cache.close()

    app = FastAPI(title="mnas latency service", version="1", docs_url="/docs", lifespan=lifespan)
    lock = asyncio.Lock()
    max_bytes = int(max_upload_mb * 1e6)
    registry = CollectorRegistry()
    requests_total = Counter("mnas_latency_requests", "Requests by endpoint and status", ["endpoint", "status"], registry=registry)
    queue_length = Gauge("mnas_latency_queue_length", "Measure requests waiting for the device", registry=registry)
    measure_seconds = Histogram("mnas_latency_measure_seconds", "Seconds per fresh measurement", registry=registry,
                                buckets=(0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320))
    cache_hits = Counter("mnas_latency_cache_hits", "Answers served from the cache", registry=registry)
    app.state.cache, app.state.profile = cache, profile

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), token.encode())

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """Auth first (an unauthenticated request gets 401 whatever it sends), then the upload limit."""
        length = request.headers.get("content-length")
        if request.url.path.startswith("/v1/") and not authorized(request):
            response = JSONResponse({"detail": "missing or wrong bearer token"}, 401, headers={"WWW-Authenticate": "Bearer"})
        elif request.url.path == "/v1/measure" and length and length.isdigit() and int(length) > max_bytes + 64 * 1024:
            response = JSONResponse({"detail": f"upload is {int(length) / 1e6:.1f} MB; the limit is {max_upload_mb:g} MB"}, 413)
        else:
            response = await call_next(request)
        requests_total.labels(request.url.path, str(response.status_code)).inc()
        return response

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "device": profile.name, "busy": lock.locked()}

    @app.get("/v1/devices")
    async def devices():
        return [
            {
                "name": profile.name,
                "hash": profile.settings_hash(),
                "backend": profile.backend,
                "model_format": profile.model_format,
                "threads": profile.threads,
                "cpus": profile.cpus,
                "description": profile.description,
                "precisions": profile.precisions,
                "queue_length": int(queue_length._value.get()),
            }
        ]

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/measurements/{model_sha256}")
    async def cached_measurement(model_sha256: str, input_shape: str | None = None):
        """A cached answer by the model's sha256, so a client need not upload a model twice."""
        hit = cache.get(ResultCache.key(model_sha256.lower(), profile.settings_hash(), parse_shape(input_shape)))
        if hit is None:
            raise HTTPException(404, "not measured yet on this device; POST /v1/measure")
        cache_hits.inc()
        return {**hit, "cached": True}

    @app.post("/v1/measure")
    async def measure(file: UploadFile = File(...), input_shape: str | None = Form(None)):
        data = await file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, f"upload is over the {max_upload_mb:g} MB limit")
        shape = parse_shape(input_shape)
        try:
            fmt = sniff_format(data)
        except MeasurementError as exc:
            raise HTTPException(STATUS_FOR_KIND.get(exc.kind, 400), str(exc)) from None
        if fmt != profile.model_format:
            raise HTTPException(400, f"device {profile.name} measures {profile.model_format.upper()} models; this file is {fmt.upper()}")
        digest = hashlib.sha256(data).hexdigest()
        key = ResultCache.key(digest, profile.settings_hash(), shape)
        hit = cache.get(key)
        if hit is not None:
            cache_hits.inc()
            return {**hit, "cached": True}
        queue_length.inc()
        try:
            await asyncio.wait_for(lock.acquire(), timeout=queue_timeout_s)
        except asyncio.TimeoutError:
            raise HTTPException(503, f"device {profile.name} is busy; waited {queue_timeout_s:g} s in the queue") from None
        finally:
            queue_length.dec()
        try:
            hit = cache.get(key)  # measured by the request ahead of us
            if hit is not None:
                cache_hits.inc()
                return {**hit, "cached": True}
            with tempfile.TemporaryDirectory(prefix="mnas-upload-") as tmp:
                path = Path(tmp) / f"model.{fmt}"
                path.write_bytes(data)
                started = time.perf_counter()
                try:
                    result = await run_in_threadpool(measure_file, profile, path, shape)
                except MeasurementError as exc:
                    raise HTTPException(STATUS_FOR_KIND.get(exc.kind, 500), str(exc)) from None
                measure_seconds.observe(time.perf_counter() - started)
        finally:
            lock.release()
        result = {**result, "model_sha256": digest}
        cache.put(key, digest, profile.settings_hash(), result)
        return {**result, "cached": False}

    return app
