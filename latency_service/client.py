"""Clients for latency figures: the HTTP service, or a device profile measured in-process.

Both return the same JSON shape (``latency_ms``, ``peak_memory_mb``, ...), so a search
can switch between a shared service and local measurement by configuration alone.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx

RETRY_STATUS = {429, 502, 503, 504}


class LatencyServiceError(Exception):
    """One clear message for anything that went wrong getting a latency figure."""

    def __init__(self, message: str, status: int | None = None, input_error: bool = False):
        super().__init__(message)
        self.status = status
        self.input_error = input_error


class _Unavailable(Exception):
    """A service that cannot answer now (unreachable, 5xx, over its per-client cap): try another."""


class LatencyClient:
    """Talks to one or more ``mnas-latency serve`` instances for one device or pool (``target``;
    None: each service's default). Requests go to the least-queued service first; a service
    that is down is skipped for ``down_for_s`` and its request retried elsewhere; transient
    failures are retried with exponential backoff. All services must measure the target on
    the same kind of device, so one architecture's figures are never mixed across kinds."""

    def __init__(self, url: str | list[str], token: str | None = None, timeout_s: float = 1800.0, retries: int = 3,
                 backoff_s: float = 0.5, target: str | None = None, down_for_s: float = 30.0):
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise LatencyServiceError("give at least one latency service URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.retries, self.backoff_s, self.target, self.down_for_s = retries, backoff_s, target, down_for_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = {u: httpx.Client(base_url=u, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0)) for u in self.urls}
        self._down_until = {u: 0.0 for u in self.urls}
        self._target_info: dict | None = None

    def close(self) -> None:
        for client in self._http.values():
            client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _once(self, url: str, method: str, path: str, missing_ok: bool = False, **kwargs):
        """One request to one service: its JSON, None (404 with ``missing_ok``), or _Unavailable."""
        try:
            response = self._http[url].request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _Unavailable(f"cannot reach the latency service at {url} ({type(exc).__name__}: {exc})") from None
        if response.status_code == 401:
            raise LatencyServiceError(f"the latency service at {url} refused the token (401): pass the right --token / MNAS_LATENCY_TOKEN", 401)
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code in RETRY_STATUS:
            raise _Unavailable(f"latency service {url} answered {response.status_code}: {_detail(response)}")
        if response.status_code >= 400:
            raise LatencyServiceError(f"latency service {url} rejected the request ({response.status_code}): {_detail(response)}",
                                      response.status_code, input_error=400 <= response.status_code < 500)
        return response.json()

    def _any(self, method: str, path: str, missing_ok: bool = False, order=None, **kwargs):
        """The first answer from the services (in ``order``), retried with backoff while all are unavailable."""
        last: list[str] = []
        for attempt in range(self.retries + 1):
            last = []
            for url in order() if order else self._up():
                try:
                    return url, self._once(url, method, path, missing_ok, **kwargs)
                except _Unavailable as exc:
                    last.append(str(exc))
                    self._mark_down(url)
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2**attempt)
        raise LatencyServiceError(f"{'; '.join(last) or 'no latency service is up'} after {self.retries + 1} attempts")

    def _mark_down(self, url: str) -> None:
        """Skip ``url`` for ``down_for_s`` (only where another service can answer meanwhile)."""
        if len(self.urls) > 1:
            self._down_until[url] = time.monotonic() + self.down_for_s

    def _up(self) -> list[str]:
        now = time.monotonic()
        up = [u for u in self.urls if self._down_until[u] <= now]
        return up or list(self.urls)  # all marked down: try them all again

    def _by_queue(self) -> list[str]:
        """Services that are up, the shortest queue for the target first."""
        lengths = {}
        for url in self._up():
            try:
                lengths[url] = self._target_at(url)["queue_length"]
            except _Unavailable:
                self._mark_down(url)
        return sorted(lengths, key=lambda u: (lengths[u], self.urls.index(u))) or self._up()

    def _target_at(self, url: str) -> dict:
        """The target as the service at ``url`` describes it now (_Unavailable if it cannot say)."""
        return self._target_of(url, self._once(url, "GET", "/v1/targets"))

    def _target_of(self, url: str, targets: list[dict]) -> dict:
        if self.target:
            found = [t for t in targets if t["name"] == self.target]
            if not found:
                raise LatencyServiceError(f"latency service {url} has no device or pool {self.target!r} "
                                          f"(it has {', '.join(t['name'] for t in targets)})", input_error=True)
            return found[0]
        default = [t for t in targets if t.get("default")]
        if not default:
            raise LatencyServiceError(f"latency service {url} serves several devices ({', '.join(t['name'] for t in targets)}): "
                                      "name one (latency.target / --target)", input_error=True)
        return default[0]

    def target_info(self) -> dict:
        """The target as every reachable service describes it; refuses services that disagree on its kind."""
        if self._target_info is None:
            seen = {}
            for url in self.urls:
                try:
                    seen[url] = self._target_at(url)
                except _Unavailable:
                    continue
            if not seen:
                url, targets = self._any("GET", "/v1/targets")
                seen[url] = self._target_of(url, targets)
            kinds = {(t["kind_hash"], t["model_format"]) for t in seen.values()}
            if len(kinds) > 1:
                raise LatencyServiceError("the latency services measure on different kinds of device: "
                                          + "; ".join(f"{u}: {t['name']} ({t['kind_hash']})" for u, t in seen.items())
                                          + "; one search measures on one kind", input_error=True)
            self._target_info = next(iter(seen.values()))
        return self._target_info

    def devices(self) -> list[dict]:
        """The target (device or pool) this client measures on: name, hash, model format, precisions."""
        return [self.target_info()]

    def model_format(self) -> str:
        return self.target_info()["model_format"]

    def measure(self, model_path: str | Path, input_shape: list[int] | None = None) -> dict:
        path = Path(model_path)
        if not path.is_file():
            raise LatencyServiceError(f"model file not found: {path}", input_error=True)
        content = path.read_bytes()
        self.target_info()  # the services agree on the kind of device
        data = {**({"device": self.target} if self.target else {}), **({"input_shape": ",".join(map(str, input_shape))} if input_shape else {})}
        # Ask by hash first: a model a service has seen costs no upload.
        digest = hashlib.sha256(content).hexdigest()
        for url in self._up():
            try:
                cached = self._once(url, "GET", f"/v1/measurements/{digest}", missing_ok=True, params=data)
            except _Unavailable:
                continue
            if cached is not None:
                return _checked({**cached, "service": url}, url)
        url, result = self._any("POST", "/v1/measure", order=self._by_queue, files={"file": (path.name, content)}, data=data)
        return _checked({**result, "service": url}, url)


def _checked(result: dict, url: str) -> dict:
    """A service's answer as a Measurement (devices.measurement), or one clear error naming what is wrong."""
    from pydantic import ValidationError

    from devices.measurement import checked

    try:
        return checked(result)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise LatencyServiceError(f"{url} answered a measurement that is not one: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


class LocalMeasurer:
    """Measures in this process's machine from a device profile, without a server."""

    def __init__(self, profile):
        self.profile = profile

    def model_format(self) -> str:
        return self.profile.model_format

    def devices(self) -> list[dict]:
        return [{"name": self.profile.name, "hash": self.profile.settings_hash(), "model_format": self.profile.model_format,
                 "precisions": self.profile.precisions}]

    def measure(self, model_path: str | Path, input_shape: list[int] | None = None) -> dict:
        from devices.errors import MeasurementError
        from devices.measure import measure_file

        try:
            return {**measure_file(self.profile, model_path, input_shape), "cached": False}
        except MeasurementError as exc:
            raise LatencyServiceError(f"measurement failed ({exc.kind}): {exc}", input_error=exc.is_input_error) from None

    def close(self) -> None:
        pass


def make_measurer(url: str | list[str] | None = None, device: str | None = None, token: str | None = None, target: str | None = None):
    """A LatencyClient for ``url`` (one or several services; ``target``: a device or pool
    there) or a LocalMeasurer for the ``device`` profile."""
    if bool(url) == bool(device):
        raise LatencyServiceError("give exactly one of a service URL or a device profile")
    if url:
        return LatencyClient(url, token=token, target=target)
    from devices.errors import ProfileError
    from devices.profile import load_profile

    try:
        return LocalMeasurer(load_profile(device))
    except ProfileError as exc:
        raise LatencyServiceError(str(exc)) from None


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body.get("detail", body)) if isinstance(body, dict) else str(body)
    except ValueError:
        return response.text[:300]
