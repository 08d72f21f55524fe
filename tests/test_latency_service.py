"""The real service on loopback, measuring real models with onnxruntime."""

import concurrent.futures
import time

import httpx
import onnx
import pytest
from onnx import TensorProto, helper
from service_helpers import Service, write_profile

from latency_service.client import LatencyClient, LatencyServiceError
from mnas.export import export_architecture
from mnas.presets import PRESETS
from mnas.space import SearchSpace


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    paths = {name: export_architecture(PRESETS[name], d / f"{name}.onnx", "onnx", resolution=32, num_classes=10) for name in PRESETS}
    paths["random"] = export_architecture(SearchSpace().sample(5), d / "random.onnx", "onnx", resolution=32, num_classes=10)
    return paths


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    d = tmp_path_factory.mktemp("svc")
    svc = Service(write_profile(d / "profile.yaml"), d / "cache.sqlite")
    yield svc
    svc.stop()


def post(url, content: bytes, name="m.onnx", **data):
    return httpx.post(url + "/v1/measure", files={"file": (name, content)}, data=data, timeout=120)


def test_measure_then_cached(service, models):
    client = LatencyClient(service.url)
    first = client.measure(models["mnasnet-a1"])
    assert first["cached"] is False and 0.05 < first["latency_ms"] < 200
    assert first["p10_ms"] <= first["latency_ms"] <= first["p90_ms"]
    assert first["peak_memory_mb"] > 1 and first["model_size_mb"] == pytest.approx(models["mnasnet-a1"].stat().st_size / 1e6)
    assert first["device"]["name"] == "test-ort" and len(first["device"]["hash"]) == 16
    assert first["runtime"]["name"] == "onnxruntime" and first["input_shape"] == [1, 3, 32, 32]
    t0 = time.perf_counter()
    again = client.measure(models["mnasnet-a1"])
    assert time.perf_counter() - t0 < 0.5
    assert again["cached"] is True and again["latency_ms"] == first["latency_ms"]
    # a different input shape is a different measurement
    with pytest.raises(LatencyServiceError, match="does not match"):
        client.measure(models["mnasnet-a1"], [1, 3, 64, 64])


def unknown_op_model(path):
    node = helper.make_node("FrobnicateV9", ["x"], ["y"], domain="com.example.missing")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example.missing", 1)])
    onnx.save(model, str(path))
    return path.read_bytes()


def test_bad_inputs_get_4xx_with_reasons_and_service_keeps_serving(service, models, tmp_path):
    good = models["mobilenet-v2"].read_bytes()
    cases = [
        (b"", 400, "empty"),
        (b"hello, I am not a model at all", 400, "neither an ONNX model nor a TFLite"),
        (good[: len(good) // 2], 400, "cannot load the model"),
        (b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64, 400, "measures ONNX models"),
        (unknown_op_model(tmp_path / "op.onnx"), 422, "lacks an operator"),
    ]
    for content, status, words in cases:
        r = post(service.url, content)
        assert r.status_code == status, (words, r.text)
        assert words in r.json()["detail"]
    for shape, words in (("1,3,0,32", "positive"), ("1,3,99999,99999", "too large"), ("banana", "must look like"), ("1,3,64,64", "does not match")):
        r = post(service.url, good, input_shape=shape)
        assert r.status_code == 422 and words in r.json()["detail"], r.text
    assert httpx.get(service.url + "/healthz").json()["status"] == "ok"
    assert LatencyClient(service.url).measure(models["mobilenet-v2"])["latency_ms"] > 0


def test_concurrent_clients_one_measurement_per_model(service, models):
    names = ["mnasnet-b1", "random", "mobilenet-v2"]

    def work(i):
        with LatencyClient(service.url) as c:
            return names[i % 3], c.measure(models[names[i % 3]])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(24)))
    assert len(results) == 24
    by_model = {}
    for name, r in results:
        by_model.setdefault(name, set()).add((r["latency_ms"], r["measured_at"]))
    assert all(len(v) == 1 for v in by_model.values())  # every answer for a model is the one measurement
    fresh = [r for _, r in results if not r["cached"]]
    assert len(fresh) <= 3


def test_devices_health_metrics(service):
    devices = httpx.get(service.url + "/v1/devices").json()
    assert devices[0]["name"] == "test-ort" and devices[0]["model_format"] == "onnx"
    metrics = httpx.get(service.url + "/metrics").text
    assert "mnas_latency_requests_total" in metrics and "mnas_latency_queue_length" in metrics
    assert "mnas_latency_cache_hits_total" in metrics and "mnas_latency_measure_seconds_bucket" in metrics


def test_auth_and_cache_survive_restart(tmp_path, models):
    profile, db = write_profile(tmp_path / "p.yaml"), tmp_path / "cache.sqlite"
    svc = Service(profile, db, token="s3cret")
    try:
        assert post(svc.url, b"x").status_code == 401
        # the token is checked before anything else: no schema errors, no size verdicts for strangers
        r = httpx.post(svc.url + "/v1/measure", data={"input_shape": "1,3,8,8"})
        assert r.status_code == 401 and "file" not in r.text and r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(svc.url + "/v1/devices").status_code == 401 and httpx.get(svc.url + "/healthz").status_code == 200
        r = httpx.post(svc.url + "/v1/measure", files={"file": ("m.onnx", b"x")}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        with pytest.raises(LatencyServiceError, match="refused the token"):
            LatencyClient(svc.url, token="wrong").measure(models["mnasnet-b1"])
        first = LatencyClient(svc.url, token="s3cret").measure(models["mnasnet-b1"])
        assert first["cached"] is False
    finally:
        svc.stop()
    svc = Service(profile, db, token="s3cret")
    try:
        again = LatencyClient(svc.url, token="s3cret").measure(models["mnasnet-b1"])
        assert again["cached"] is True and again["latency_ms"] == first["latency_ms"]
    finally:
        svc.stop()


def test_upload_limit(tmp_path):
    svc = Service(write_profile(tmp_path / "p.yaml"), tmp_path / "c.sqlite", extra=["--max-upload-mb", "0.01"])
    try:
        r = post(svc.url, b"\x08" * 50_000)
        assert r.status_code == 413 and "limit" in r.json()["detail"]
    finally:
        svc.stop()


def test_unreachable_service_is_one_clear_error():
    client = LatencyClient("http://127.0.0.1:9", retries=1, backoff_s=0.01)
    with pytest.raises(LatencyServiceError, match=r"cannot reach the latency service at http://127.0.0.1:9 .* after 2 attempts"):
        client.measure(__file__)


def test_cli_measure_via_url_and_in_process(service, models, tmp_path):
    import json

    from conftest import run_cli

    profile = write_profile(tmp_path / "p.yaml")
    local = json.loads(run_cli("latency", "measure", str(models["random"]), "--device", str(profile), "--json").stdout)
    remote = json.loads(run_cli("latency", "measure", str(models["random"]), "--url", service.url, "--json").stdout)
    assert set(local) - {"model_sha256"} <= set(remote)
    assert local["device"] == remote["device"]  # same profile settings, same device hash
    assert 0.5 < local["latency_ms"] / remote["latency_ms"] < 2.0
    # an architecture is exported first, in the device's format, at --resolution
    arch = json.loads(run_cli("latency", "measure", "mnasnet-b1", "--device", str(profile), "--resolution", "32", "--json").stdout)
    assert arch["input_shape"] == [1, 3, 32, 32] and arch["model_format"] == "onnx"
    proc = run_cli("latency", "measure", str(models["random"]), "--url", "http://127.0.0.1:9", check=False, timeout=120)
    assert proc.returncode == 2 and "cannot reach the latency service" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("latency", "measure", str(models["random"]), check=False)
    assert proc.returncode == 2 and "exactly one of" in proc.stderr


def test_cached_answer_by_hash_needs_no_upload(service, models):
    import hashlib

    digest = hashlib.sha256(models["mnasnet-b1"].read_bytes()).hexdigest()
    LatencyClient(service.url).measure(models["mnasnet-b1"])
    r = httpx.get(f"{service.url}/v1/measurements/{digest}")
    assert r.status_code == 200 and r.json()["cached"] is True
    assert httpx.get(f"{service.url}/v1/measurements/{'0' * 64}").status_code == 404


def test_a_measurement_is_one_typed_answer_documented_by_the_service(service, models):
    from latency_service.client import _checked

    schema = httpx.get(service.url + "/openapi.json", timeout=30).json()
    fields = schema["components"]["schemas"]["Measurement"]["properties"]
    assert {"latency_ms", "cv", "peak_memory_mb", "model_size_mb", "device", "cached"} <= set(fields)
    posted = schema["paths"]["/v1/measure"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert posted["$ref"].endswith("/Measurement")
    answer = LatencyClient(service.url).measure(models["mobilenet-v2"])
    assert answer["latency_ms"] > 0 and answer["runtime"]["name"] == "onnxruntime"  # a source's own details stay
    with pytest.raises(LatencyServiceError, match=r"http://x answered a measurement that is not one: latency_ms"):
        _checked({"cv": 0.01, "device": {"name": "d", "hash": "h"}}, "http://x")
    with pytest.raises(LatencyServiceError, match="latency_ms: Input should be greater than 0"):
        _checked({"latency_ms": -1.0, "cv": 0.01, "device": {"name": "d", "hash": "h"}}, "http://x")
