"""A latency device farm: several devices per service, pools that survive a failing member,
several services per client, safe defaults (no open service without a token), the audit log
and the per-client cap."""

import concurrent.futures
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from service_helpers import FAST_PROFILE, Service, free_port, write_profile

from latency_service.client import LatencyClient, LatencyServiceError

FIXTURES = Path(__file__).parent / "fixtures"

FAKE_ADB = """#!/bin/sh
# A stand-in for adb and one phone per serial: 'gone-SERIAL' beside it unplugs that phone.
serial="$2"; shift 2
if [ -e "{dir}/gone-$serial" ]; then echo "error: device '$serial' not found" >&2; exit 1; fi
case "$1" in
  get-state) echo device ;;
  push) ;;
  shell) case "$2" in mkdir*) ;; *) sleep {delay}; cat "{fixture}" ;; esac ;;
esac
"""

PHONE = """\
name: {name}
backend: android-adb
pool: {pool}
repeats: 1
max_cv: 10.0
max_remeasure: 0
adb: {{serial: {serial}, adb: {adb}}}
"""


def fake_phones(tmp_path: Path, serials: list[str], delay: float = 0.4, pool: str = "phones") -> list[Path]:
    adb = tmp_path / "adb"
    adb.write_text(FAKE_ADB.format(dir=tmp_path, delay=delay, fixture=FIXTURES / "benchmark_model_v2.txt"))
    adb.chmod(0o755)
    paths = []
    for s in serials:
        path = tmp_path / f"{s}.yaml"
        path.write_text(PHONE.format(name=f"phone-{s}", pool=pool, serial=s, adb=adb))
        paths.append(path)
    return paths


def tflite_bytes(i: int) -> bytes:
    return b"\x1c\x00\x00\x00TFL3" + i.to_bytes(4, "little") + b"\x00" * 64


def post(url: str, content: bytes, device: str | None = None) -> httpx.Response:
    return httpx.post(url + "/v1/measure", files={"file": ("m.tflite", content)}, data={"device": device} if device else {}, timeout=60)


def test_two_devices_measure_on_the_device_asked_for_and_log_every_request(tmp_path):
    from mnas.export import export_architecture
    from mnas.presets import PRESETS

    a, b = write_profile(tmp_path / "a.yaml", name="dev-a"), write_profile(tmp_path / "b.yaml", name="dev-b")
    model = export_architecture(PRESETS["mnasnet-b1"], tmp_path / "m.onnx", "onnx", 32, 10)
    svc = Service([a, b], tmp_path / "cache.sqlite")
    try:
        devices = httpx.get(svc.url + "/v1/devices").json()
        assert [d["name"] for d in devices] == ["dev-a", "dev-b"] and all(d["healthy"] and d["queue_length"] == 0 for d in devices)
        r = httpx.post(svc.url + "/v1/measure", files={"file": ("m.onnx", model.read_bytes())}, data={"device": "dev-b"}, timeout=60)
        assert r.status_code == 200 and r.json()["device"]["name"] == "dev-b"
        r = httpx.post(svc.url + "/v1/measure", files={"file": ("m.onnx", model.read_bytes())}, timeout=60)
        assert r.status_code == 404 and "several devices" in r.json()["detail"]
        with pytest.raises(LatencyServiceError, match="serves several devices"):
            LatencyClient(svc.url).measure(model)
        on_a = LatencyClient(svc.url, target="dev-a").measure(model)
        assert on_a["device"]["name"] == "dev-a" and on_a["cached"] is False and on_a["service"] == svc.url
        assert LatencyClient(svc.url, target="dev-b").measure(model)["cached"] is True  # cached per device
    finally:
        svc.stop()
    lines = [json.loads(line) for line in (tmp_path / "cache.audit.jsonl").read_text().splitlines()]
    measured = [line for line in lines if line["endpoint"] == "/v1/measure" and line["status"] == 200]
    assert [line["device"] for line in measured] == ["dev-b", "dev-a"] and all(line["client"] == "127.0.0.1" for line in lines)
    assert measured[0]["model_sha256"] == on_a["model_sha256"] and measured[0]["latency_ms"] > 0 and "time" in measured[0]


def test_a_pool_spreads_requests_and_keeps_serving_when_a_member_fails(tmp_path):
    profiles = fake_phones(tmp_path, ["A", "B"])
    svc = Service(profiles, tmp_path / "cache.sqlite", extra=["--health-interval-s", "1", "--max-queued-per-client", "4"])
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: post(svc.url, tflite_bytes(i)), range(4)))  # no device named: the only pool
        assert all(r.status_code == 200 for r in results)
        assert {r.json()["device"]["name"] for r in results} == {"phone-A", "phone-B"} and results[0].json()["pool"] == "phones"
        assert results[0].json()["latency_ms"] == pytest.approx(77.655)

        (tmp_path / "gone-B").touch()  # phone B unplugged
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: post(svc.url, tflite_bytes(i), "phones"), range(10, 14)))
        assert all(r.status_code == 200 and r.json()["device"]["name"] == "phone-A" for r in results)
        b = [d for d in httpx.get(svc.url + "/v1/devices").json() if d["name"] == "phone-B"][0]
        assert not b["healthy"] and "not found" in b["status"] and httpx.get(svc.url + "/healthz").json()["status"] == "degraded"
        r = post(svc.url, tflite_bytes(20), "phone-B")
        assert r.status_code == 503 and "out of service" in r.json()["detail"]

        (tmp_path / "gone-B").unlink()  # plugged back: the health check returns it
        deadline = time.time() + 15
        while time.time() < deadline and not all(d["healthy"] for d in httpx.get(svc.url + "/v1/devices").json()):
            time.sleep(0.3)
        assert post(svc.url, tflite_bytes(21), "phone-B").json()["device"]["name"] == "phone-B"

        with concurrent.futures.ThreadPoolExecutor(8) as pool:  # one client may have 4 queued
            codes = [r.status_code for r in pool.map(lambda i: post(svc.url, tflite_bytes(i)), range(30, 38))]
        assert codes.count(429) >= 1 and codes.count(200) >= 4
    finally:
        svc.stop()


def test_a_pool_of_devices_that_measure_differently_is_refused(tmp_path):
    a, b = fake_phones(tmp_path, ["A", "B"])
    b.write_text(b.read_text().replace("repeats: 1", "repeats: 2"))
    r = subprocess.run([str(Path(sys.executable).with_name("mnas-latency")), "serve", "--device", str(a), "--device", str(b),
                        "--port", str(free_port()), "--db", str(tmp_path / "c.sqlite")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "pool 'phones' mixes devices that measure differently" in r.stderr and "Traceback" not in r.stderr


def test_a_client_of_two_services_moves_on_when_one_stops_and_refuses_mixed_kinds(tmp_path):
    from mnas.export import export_architecture
    from mnas.presets import PRESETS

    models = [export_architecture(PRESETS[n], tmp_path / f"{n}.onnx", "onnx", 32, 10) for n in ("mnasnet-b1", "mobilenet-v2", "fbnet-c")]
    one = Service(write_profile(tmp_path / "one.yaml", name="box-1"), tmp_path / "one.sqlite")
    two = Service(write_profile(tmp_path / "two.yaml", name="box-2"), tmp_path / "two.sqlite")
    try:
        client = LatencyClient([one.url, two.url], retries=1, backoff_s=0.1)
        first = client.measure(models[0])
        assert first["service"] == one.url  # both idle: the first listed
        one.stop()
        second = client.measure(models[1])
        assert second["service"] == two.url and second["device"]["name"] == "box-2" and second["cached"] is False
        assert client.measure(models[2])["service"] == two.url
        slow = tmp_path / "slow.yaml"
        slow.write_text(FAST_PROFILE.format(name="box-3", backend="onnxruntime").replace("timed_runs: 15", "timed_runs: 30"))
        three = Service(slow, tmp_path / "three.sqlite")
        try:
            with pytest.raises(LatencyServiceError, match="different kinds of device"):
                LatencyClient([two.url, three.url]).measure(models[0])
        finally:
            three.stop()
    finally:
        two.stop()


def test_no_open_service_without_a_token(tmp_path):
    exe = str(Path(sys.executable).with_name("mnas-latency"))
    profile = write_profile(tmp_path / "p.yaml")
    r = subprocess.run([exe, "serve", "--device", str(profile), "--host", "0.0.0.0", "--port", str(free_port()), "--db", str(tmp_path / "c.sqlite")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "refusing to serve on 0.0.0.0 without a token" in r.stderr
    token_file = tmp_path / "data" / "token"
    svc = Service(profile, tmp_path / "c.sqlite", extra=["--token-file", str(token_file)])
    try:
        token = token_file.read_text().strip()
        assert len(token) >= 32 and token in svc.db.with_suffix(".log").read_text() and (token_file.stat().st_mode & 0o777) == 0o600
        assert httpx.get(svc.url + "/v1/devices").status_code == 401
        assert httpx.get(svc.url + "/v1/devices", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        svc.stop()
    again = Service(profile, tmp_path / "c.sqlite", extra=["--token-file", str(token_file)])  # kept: the same token, not printed again
    try:
        assert token_file.read_text().strip() == token and token not in again.db.with_suffix(".log").read_text()
    finally:
        again.stop()


def test_a_search_on_two_services_loses_no_trial_when_one_stops(tmp_path):
    from search_helpers import tiny_config, write_config

    from search.experiment.store import Store

    one = Service(write_profile(tmp_path / "one.yaml", name="box-1"), tmp_path / "one.sqlite")
    two = Service(write_profile(tmp_path / "two.yaml", name="box-2"), tmp_path / "two.sqlite")
    out = tmp_path / "exp"
    cfg = tiny_config(tmp_path, max_trials=5, controller={"type": "random"}, latency={"device": None, "url": [one.url, two.url]})
    search = subprocess.Popen([str(Path(sys.executable).with_name("mnas")), "search", str(write_config(tmp_path / "c.yaml", cfg)),
                               "--out", str(out), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (out / "experiment.sqlite").is_file():
            time.sleep(0.5)
        while time.time() < deadline and not any(t["status"] == "succeeded" for t in Store(out).trials()):
            time.sleep(0.5)
        one.stop()  # mid-search
        output, _ = search.communicate(timeout=300)
    finally:
        search.kill()
        two.stop()
    assert search.returncode == 0, output
    trials = Store(out).trials()
    assert len(trials) == 5 and all(t["status"] == "succeeded" for t in trials), [t["error"] for t in trials]
    services = [t["metrics"]["latency"]["service"] for t in trials]
    # both served: the first measurement goes to `one` (equal queues, first listed), two parallel trials may
    # finish in either order, and what follows the stop goes to `two`
    assert set(services) == {one.url, two.url}
    status = subprocess.run([str(Path(sys.executable).with_name("mnas")), "status", str(out), "--json"], capture_output=True, text=True)
    import socket

    hosts = json.loads(status.stdout)["hosts"]  # where each trial ran ("store": answered from the store)
    assert hosts[socket.gethostname()] >= 1 and sum(hosts.values()) == 5 and set(hosts) <= {socket.gethostname(), "store"}
