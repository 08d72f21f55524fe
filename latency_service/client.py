"""Clients for latency figures: the HTTP service, or a device profile measured in-process.

Both return the same JSON shape (``latency_ms``, ``peak_memory_mb``, ...), so a search
can switch between a shared service and local measurement by configuration alone.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx

RETRY_STATUS = {502, 503, 504}


class LatencyServiceError(Exception):
    """One clear message for anything that went wrong getting a latency figure."""

    def __init__(self, message: str, status: int | None = None, input_error: bool = False):
        super().__init__(message)
        self.status = status
        self.input_error = input_error


class LatencyClient:
    """Talks to ``mnas-latency serve``; retries transient failures with exponential backoff."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 1800.0, retries: int = 3, backoff_s: float = 0.5):
        self.url = url.rstrip("/")
        self.retries, self.backoff_s = retries, backoff_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0))

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _request(self, method: str, path: str, missing_ok: bool = False, **kwargs) -> dict | list | None:
        last = ""
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                last = f"cannot reach the latency service at {self.url} ({type(exc).__name__}: {exc})"
            else:
                if response.status_code == 401:
                    raise LatencyServiceError(f"the latency service at {self.url} refused the token (401): pass the right --token / MNAS_LATENCY_TOKEN", 401)
                if missing_ok and response.status_code == 404:
                    return None
                if response.status_code in RETRY_STATUS:
                    last = f"latency service {self.url} answered {response.status_code}: {_detail(response)}"
                elif response.status_code >= 400:
                    raise LatencyServiceError(
                        f"latency service rejected the request ({response.status_code}): {_detail(response)}",
                        response.status_code,
                        input_error=400 <= response.status_code < 500,
                    )
                else:
                    return response.json()
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2**attempt)
        raise LatencyServiceError(f"{last} after {self.retries + 1} attempts")

    def devices(self) -> list[dict]:
        return self._request("GET", "/v1/devices")

    def model_format(self) -> str:
        return self.devices()[0]["model_format"]

    def measure(self, model_path: str | Path, input_shape: list[int] | None = None) -> dict:
        path = Path(model_path)
        if not path.is_file():
            raise LatencyServiceError(f"model file not found: {path}", input_error=True)
        content = path.read_bytes()
        data = {"input_shape": ",".join(map(str, input_shape))} if input_shape else {}
        # Ask by hash first: a model the device has seen costs no upload.
        digest = hashlib.sha256(content).hexdigest()
        cached = self._request("GET", f"/v1/measurements/{digest}", missing_ok=True, params=data)
        if cached is not None:
            return cached
        return self._request("POST", "/v1/measure", files={"file": (path.name, content)}, data=data)


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


def make_measurer(url: str | None = None, device: str | None = None, token: str | None = None):
    """A LatencyClient for ``url`` or a LocalMeasurer for the ``device`` profile."""
    if bool(url) == bool(device):
        raise LatencyServiceError("give exactly one of a service URL or a device profile")
    if url:
        return LatencyClient(url, token=token)
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
