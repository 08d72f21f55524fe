"""The latency service: model file in, latency and memory on one of this host's devices out.

One measurement at a time per device (``latency_service.farm``: a queue per device, pools
served by their first free member, health), so results never interleave; answers are cached
in SQLite by model hash and device (or pool) settings. Every request on ``/v1/`` is checked
against the bearer token first, counted against its client's cap on queued requests, and
written to the audit log (time, client, model hash, device, result).
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
from devices.health import device_problem
from devices.measure import measure_file, sniff_format
from devices.measurement import Measurement
from devices.profile import DeviceProfile
from latency_service.cache import ResultCache
from latency_service.farm import Farm, NoDevice

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
    profiles: DeviceProfile | list[DeviceProfile],
    token: str | None = None,
    db_path: str | Path = "latency-cache.sqlite",
    max_upload_mb: float = 200.0,
    queue_timeout_s: float = 1800.0,
    max_queued_per_client: int = 16,
    audit_log: str | Path | None = None,
    health_interval_s: float = 30.0,
    health_check=device_problem,
) -> FastAPI:
    farm = Farm(profiles if isinstance(profiles, list) else [profiles])
    cache = ResultCache(db_path)
    audit = AuditLog(audit_log) if audit_log else None

    async def monitor():
        while True:
            await asyncio.sleep(health_interval_s)
            await farm.check_health(health_check)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        await farm.check_health(health_check)
        task = asyncio.create_task(monitor())
        yield
        task.cancel()
        cache.close()
        if audit:
            audit.close()

    app = FastAPI(title="mnas latency service", version="1", docs_url="/docs", lifespan=lifespan)
    max_bytes = int(max_upload_mb * 1e6)
    registry = CollectorRegistry()
    requests_total = Counter("mnas_latency_requests", "Requests by endpoint and status", ["endpoint", "status"], registry=registry)
    queue_length = Gauge("mnas_latency_queue_length", "Measure requests waiting for a device", registry=registry)
    measure_seconds = Histogram("mnas_latency_measure_seconds", "Seconds per fresh measurement", registry=registry,
                                buckets=(0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320))
    cache_hits = Counter("mnas_latency_cache_hits", "Answers served from the cache", registry=registry)
    app.state.cache, app.state.farm = cache, farm
    in_flight: dict[str, int] = {}  # client address -> its measure requests queued or measuring

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
        if audit and request.url.path.startswith("/v1/"):
            audit.write(request, response.status_code, getattr(request.state, "audit", {}))
        return response

    def target_of(name: str | None):
        try:
            return farm.target(name)
        except KeyError as exc:
            raise HTTPException(404, exc.args[0]) from None

    @app.get("/healthz")
    async def healthz():
        out = [m.name for m in farm.members if m.problem is not None]
        return {"status": "ok" if not out else "degraded", "devices": [m.name for m in farm.members], "out_of_service": out,
                "busy": any(m.busy for m in farm.members)}

    @app.get("/v1/devices")
    async def devices():
        return farm.describe_devices()

    @app.get("/v1/targets")
    async def targets():
        """What a request can name: each device, and each pool (with queue length and free members)."""
        default = farm.default_target()
        return [{**t.describe(), "default": t is default} for t in farm.targets.values()]

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/measurements/{model_sha256}", response_model=Measurement)
    async def cached_measurement(request: Request, model_sha256: str, input_shape: str | None = None, device: str | None = None):
        """A cached answer by the model's sha256, so a client need not upload a model twice."""
        target = target_of(device)
        request.state.audit = {"model_sha256": model_sha256.lower(), "device": target.name}
        hit = cache.get(ResultCache.key(model_sha256.lower(), target.cache_hash, parse_shape(input_shape)))
        if hit is None:
            raise HTTPException(404, f"not measured yet on {target.name}; POST /v1/measure")
        cache_hits.inc()
        request.state.audit["latency_ms"] = hit.get("latency_ms")
        return {**hit, "cached": True}

    @app.post("/v1/measure", response_model=Measurement)
    async def measure(request: Request, file: UploadFile = File(...), input_shape: str | None = Form(None), device: str | None = Form(None)):
        target = target_of(device)
        data = await file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, f"upload is over the {max_upload_mb:g} MB limit")
        shape = parse_shape(input_shape)
        try:
            fmt = sniff_format(data)
        except MeasurementError as exc:
            raise HTTPException(STATUS_FOR_KIND.get(exc.kind, 400), str(exc)) from None
        if fmt != target.profile.model_format:
            raise HTTPException(400, f"device {target.name} measures {target.profile.model_format.upper()} models; this file is {fmt.upper()}")
        digest = hashlib.sha256(data).hexdigest()
        request.state.audit = {"model_sha256": digest, "device": target.name}
        key = ResultCache.key(digest, target.cache_hash, shape)
        hit = cache.get(key)
        if hit is not None:
            cache_hits.inc()
            request.state.audit["latency_ms"] = hit.get("latency_ms")
            return {**hit, "cached": True}
        client = client_address(request)
        if in_flight.get(client, 0) >= max_queued_per_client:
            raise HTTPException(429, f"client {client} already has {in_flight[client]} measurements queued (the limit per client is "
                                     f"{max_queued_per_client}); wait for them")
        in_flight[client] = in_flight.get(client, 0) + 1
        try:
            return await _measure_on(target, data, fmt, shape, key, digest, request)
        finally:
            in_flight[client] -= 1

    async def _measure_on(target, data: bytes, fmt: str, shape, key: str, digest: str, request: Request) -> dict:
        while True:  # a member that fails as a device is taken out; the request goes to the next one
            queue_length.inc()
            try:
                member = await target.acquire(queue_timeout_s)
            except asyncio.TimeoutError:
                raise HTTPException(503, f"device {target.name} is busy; waited {queue_timeout_s:g} s in the queue") from None
            except NoDevice as exc:
                raise HTTPException(503, str(exc)) from None
            finally:
                queue_length.dec()
            kind = error = None
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
                        result = await run_in_threadpool(measure_file, member.profile, path, shape)
                    except MeasurementError as exc:
                        kind, error = exc.kind, str(exc)
                        if exc.kind == "device_unavailable" and len(target.members) > 1:
                            continue  # released below as out of service; another member takes the request
                        raise HTTPException(STATUS_FOR_KIND.get(exc.kind, 500), str(exc)) from None
                    measure_seconds.observe(time.perf_counter() - started)
                    member.measured += 1
            finally:
                await farm.release(member, kind, error)
            result = {**result, "model_sha256": digest, **({"pool": target.name} if target.pooled else {})}
            cache.put(key, digest, target.cache_hash, result)
            request.state.audit.update(member=member.name, latency_ms=result["latency_ms"])
            return {**result, "cached": False}

    return app


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class AuditLog:
    """One JSON line per request on /v1/: time, client, endpoint, status, model hash, device."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a", buffering=1)

    def write(self, request: Request, status: int, details: dict) -> None:
        import datetime

        line = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                "client": client_address(request), "method": request.method,
                "endpoint": request.url.path, "status": status, **details}
        self.file.write(json.dumps(line) + "\n")

    def close(self) -> None:
        self.file.close()
