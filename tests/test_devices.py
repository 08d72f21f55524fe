"""Device profiles, the measuring process, and the Android backend's commands and parsing."""

import os
import stat
from pathlib import Path

import pytest
from service_helpers import write_profile

from devices.android import benchmark_command, check_device, cpu_mask, parse_benchmark_output
from devices.errors import MeasurementError, ProfileError
from devices.measure import measure_file, robust_cv, sniff_format
from devices.profile import DeviceProfile, load_profile
from mnas.export import export_architecture
from mnas.presets import PRESETS

FIXTURES = Path(__file__).parent / "fixtures"


def test_shipped_profiles_load():
    ort, lite, phone = (load_profile(n) for n in ("x86-ort-1t", "x86-litert-1t", "android-pixel-tflite"))
    assert (ort.backend, ort.threads, ort.model_format) == ("onnxruntime", 1, "onnx")
    assert (lite.backend, lite.model_format) == ("litert", "tflite")
    assert phone.adb.benchmark_binary == "/data/local/tmp/benchmark_model" and phone.cpus == [2]
    assert len({ort.settings_hash(), lite.settings_hash(), phone.settings_hash()}) == 3
    assert ort.settings_hash() == ort.model_copy(update={"description": "other words"}).settings_hash()
    assert ort.settings_hash() != ort.model_copy(update={"threads": 2}).settings_hash()
    for name, plain in (("x86-ort-1t-steady", ort), ("x86-ort-1t-steady-224", ort), ("x86-litert-1t-steady-224", lite)):
        steady = load_profile(name)  # a plain profile plus a shipped reference model
        assert steady.reference.path.is_file() and steady.model_dump(exclude={"name", "description", "reference"}) == \
            plain.model_dump(exclude={"name", "description", "reference"})


def test_bad_profiles_name_the_field(tmp_path):
    (tmp_path / "a.yaml").write_text("name: x\nbackend: tensorrt\n")
    with pytest.raises(ProfileError, match="backend"):
        load_profile(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("name: x\nbackend: litert\ntimed_runs: 1\n")
    with pytest.raises(ProfileError, match="timed_runs"):
        load_profile(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ProfileError, match="mapping"):
        load_profile(tmp_path / "c.yaml")
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "none.yaml")


def test_sniff_and_cv():
    assert sniff_format(b"\x1c\x00\x00\x00TFL3\x00\x00") == "tflite"
    assert sniff_format(b"\x08\x07\x12") == "onnx"
    with pytest.raises(MeasurementError) as err:
        sniff_format(b"")
    assert err.value.kind == "empty_file" and err.value.is_input_error
    assert robust_cv([10.0] * 20) == 0.0
    assert robust_cv([10.0] * 18 + [100.0, 200.0]) == 0.0  # two preempted runs do not move it
    assert robust_cv([9.0, 10.0, 11.0] * 10) == pytest.approx(0.14826, rel=1e-3)


@pytest.fixture(scope="module")
def a1_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("a1")
    return {fmt: export_architecture(PRESETS["mnasnet-a1"], d / f"a1.{fmt}", fmt, resolution=64, num_classes=10) for fmt in ("onnx", "tflite")}


@pytest.mark.parametrize("backend, fmt", [("onnxruntime", "onnx"), ("litert", "tflite")])
def test_measure_real_runtimes(tmp_path, a1_files, backend, fmt):
    profile = load_profile(write_profile(tmp_path / "p.yaml", backend=backend, name=f"t-{backend}"))
    result = measure_file(profile, a1_files[fmt])
    assert 0.05 < result["latency_ms"] < 500 and result["p10_ms"] <= result["p90_ms"]
    assert len(result["process_medians_ms"]) == 2  # two fresh processes
    assert result["peak_memory_mb"] > 10 and result["model_size_mb"] > 10  # 2.6M float32 weights
    assert result["input_shape"] == [1, 3, 64, 64] and result["model_format"] == fmt
    assert result["runtime"]["name"] in ("onnxruntime", "ai-edge-litert")


def test_litert_rejects_broken_and_mismatched_files(tmp_path, a1_files):
    profile = load_profile(write_profile(tmp_path / "p.yaml", backend="litert"))
    data = a1_files["tflite"].read_bytes()
    (tmp_path / "cut.tflite").write_bytes(data[: len(data) // 3])
    with pytest.raises(MeasurementError) as err:
        measure_file(profile, tmp_path / "cut.tflite")
    assert err.value.kind in ("corrupt_model", "runtime_crash")
    with pytest.raises(MeasurementError, match="measures TFLITE models; this file is ONNX"):
        measure_file(profile, a1_files["onnx"])
    # a static model is measured at its own shape: another one is refused, not silently resized
    with pytest.raises(MeasurementError) as err:
        measure_file(profile, a1_files["tflite"], [1, 3, 32, 32])
    assert err.value.kind == "bad_input_shape" and "[1, 3, 64, 64]" in str(err.value)


def test_timeout_stops_the_measuring_process(tmp_path, a1_files):
    profile = load_profile(write_profile(tmp_path / "p.yaml")).model_copy(update={"timed_runs": 100000, "timeout_s": 3})
    with pytest.raises(MeasurementError) as err:
        measure_file(profile, a1_files["onnx"])
    assert err.value.kind == "timeout" and "3 s" in str(err.value)


def test_pinning_to_missing_cpus_is_clear(tmp_path, a1_files):
    profile = load_profile(write_profile(tmp_path / "p.yaml")).model_copy(update={"cpus": [4095]})
    with pytest.raises(MeasurementError, match="CPUs \\[4095\\]"):
        measure_file(profile, a1_files["onnx"])


# ----- a reference model timed next to each candidate (drift-free profiles)
def test_reference_profile_reports_the_ratio_times_the_calibration(tmp_path, a1_files):
    plain = load_profile(write_profile(tmp_path / "p.yaml"))
    steady = DeviceProfile.model_validate({**plain.model_dump(), "reference": {"model": "mnasnet-a1-64", "latency_ms": 2.0}})
    reference_file = steady.reference.path
    # the reference against itself: each run divided by the next run of the same graph
    itself = measure_file(steady, reference_file)
    assert itself["latency_ms"] == pytest.approx(2.0, rel=0.2)
    assert itself["reference"]["calibrated_ms"] == 2.0 and itself["reference"]["reference_ms"] > 0
    assert itself["reference"]["speed"] == pytest.approx(2.0 / itself["reference"]["reference_ms"])
    # a candidate: its ratio to the reference, in the calibration's milliseconds
    steady_a1, plain_a1 = measure_file(steady, a1_files["onnx"]), measure_file(plain, a1_files["onnx"])
    ratio = steady_a1["latency_ms"] / 2.0
    raw_ratio = steady_a1["reference"]["raw_latency_ms"] / steady_a1["reference"]["reference_ms"]
    assert ratio == pytest.approx(raw_ratio, rel=0.25)
    # peak memory stays the candidate's own (read before the reference is loaded: it would add ~20 MB);
    # two processes' peak RSS differ by a few MB of allocator noise (1.8 MB seen in CI), far below 20
    assert steady_a1["peak_memory_mb"] == pytest.approx(plain_a1["peak_memory_mb"], abs=6.0)
    # under LiteRT the reference still runs on onnxruntime, in the same process
    lite = load_profile(write_profile(tmp_path / "l.yaml", backend="litert"))
    lite = DeviceProfile.model_validate({**lite.model_dump(), "reference": {"latency_ms": 2.0}})
    lite_a1 = measure_file(lite, a1_files["tflite"])
    assert lite_a1["runtime"]["name"] == "ai-edge-litert" and lite_a1["reference"]["reference_ms"] > 0
    assert lite_a1["latency_ms"] / 2.0 == pytest.approx(lite_a1["reference"]["raw_latency_ms"] / lite_a1["reference"]["reference_ms"], rel=0.25)


def test_profiling_with_a_reference_is_in_the_calibration_units(tmp_path):
    """Per-operator profiles on a reference profile are scaled like its measurements: by the
    calibrated figure (here an arbitrary 50 ms, some 40x the reference's real time) over the
    reference's time next to the profiled runs.

    The plain and the scaled profiles are separate runs (one hot, one interleaved with the
    reference) on a machine that may be busy, so their raw times can differ by 1.5x; the
    bands are a factor of 3, against the factor of ~40 that a missing scaling would leave."""
    from devices.profiling import profile_model

    plain = load_profile(write_profile(tmp_path / "p.yaml"))
    steady = DeviceProfile.model_validate({**plain.model_dump(), "reference": {"model": "mnasnet-a1-64", "latency_ms": 50.0}})
    raw, scaled = profile_model(plain, steady.reference.path, runs=10), profile_model(steady, steady.reference.path, runs=10)
    reference_ms = measure_file(plain, steady.reference.path)["latency_ms"]
    assert raw["scale"] == 1.0 and 1 / 3 < scaled["scale"] / (50.0 / reference_ms) < 3
    assert 1 / 3 < sum(n["ms"] for n in scaled["nodes"]) / (sum(n["ms"] for n in raw["nodes"]) * scaled["scale"]) < 3
    assert 1 / 3 < sum(n["ms"] for n in scaled["nodes"]) / scaled["run_ms"] < 1.2  # nodes and the run in the same units


def test_reference_settings_are_checked_and_hashed_by_content(tmp_path):
    base = load_profile(write_profile(tmp_path / "p.yaml")).model_dump()
    named = DeviceProfile.model_validate({**base, "reference": {"model": "mnasnet-a1-64", "latency_ms": 1.0}})
    copy = tmp_path / "sub" / "ref.onnx"
    copy.parent.mkdir()
    copy.write_bytes(named.reference.path.read_bytes())
    (tmp_path / "sub" / "beside.yaml").write_text(
        (tmp_path / "p.yaml").read_text() + "reference:\n  model: ref.onnx\n  latency_ms: 1.0\n")
    beside = load_profile(tmp_path / "sub" / "beside.yaml")  # a file named relative to its profile
    assert beside.reference.path == copy.resolve()
    assert beside.settings_hash() == named.settings_hash()  # same file, other path: same measurements
    assert named.settings_hash() != DeviceProfile.model_validate({**base, "reference": {"latency_ms": 1.5}}).settings_hash()
    assert named.settings_hash() != DeviceProfile.model_validate(base).settings_hash()
    (tmp_path / "bad.yaml").write_text((tmp_path / "p.yaml").read_text() + "reference:\n  model: nowhere.onnx\n  latency_ms: 1\n")
    with pytest.raises(ProfileError, match="reference.*nowhere.onnx.*mnasnet-a1-64"):
        load_profile(tmp_path / "bad.yaml")
    (tmp_path / "phone.yaml").write_text("name: ph\nbackend: android-adb\nreference:\n  latency_ms: 1\n")
    with pytest.raises(ProfileError, match="android-adb"):
        load_profile(tmp_path / "phone.yaml")


# ----- Android over adb: the fixtures follow benchmark_model's published output format
def test_adb_benchmark_command():
    profile = load_profile("android-pixel-tflite").model_copy(update={"cpus": [4, 5], "threads": 2})
    assert cpu_mask([4, 5]) == "30" and cpu_mask([0]) == "1" and cpu_mask(None) is None
    assert benchmark_command(profile, "/data/local/tmp/mnas/m.tflite") == [
        "taskset", "30", "/data/local/tmp/benchmark_model", "--graph=/data/local/tmp/mnas/m.tflite",
        "--num_threads=2", "--warmup_runs=20", "--num_runs=50", "--use_xnnpack=true", "--report_peak_memory_footprint=true",
    ]


def test_parse_benchmark_model_with_percentiles():
    r = parse_benchmark_output((FIXTURES / "benchmark_model_v2.txt").read_text())
    assert r["runs"] == 50  # the timed line, not the warm-up line
    assert r["median_ms"] == pytest.approx(77.655) and r["p5_ms"] == pytest.approx(77.012) and r["p95_ms"] == pytest.approx(79.240)
    assert r["mean_ms"] == pytest.approx(77.7312) and r["std_ms"] == pytest.approx(0.611)
    assert r["init_ms"] == pytest.approx(61.224) and r["peak_memory_mb"] == pytest.approx(31.4297)


def test_parse_older_benchmark_model_with_crlf():
    r = parse_benchmark_output((FIXTURES / "benchmark_model_v1.txt").read_text())
    assert r["runs"] == 50 and r["mean_ms"] == pytest.approx(88.1026) and "median_ms" not in r
    assert r["peak_memory_mb"] == pytest.approx(24.875)


def test_parse_failure_output():
    with pytest.raises(MeasurementError) as err:
        parse_benchmark_output((FIXTURES / "benchmark_model_missing_op.txt").read_text())
    assert err.value.kind == "unsupported_op" and "FrobnicateV9" in str(err.value)
    with pytest.raises(MeasurementError, match="no timings"):
        parse_benchmark_output("STARTING!\n")


def test_missing_adb_or_phone_is_one_clear_error(tmp_path):
    profile = load_profile("android-pixel-tflite")
    no_adb = profile.model_copy(update={"adb": profile.adb.model_copy(update={"adb": str(tmp_path / "no-adb")})})
    with pytest.raises(MeasurementError, match="adb not found") as err:
        check_device(no_adb)
    assert err.value.kind == "device_unavailable"
    # an adb that finds no phone (what platform-tools prints with nothing on USB)
    fake = tmp_path / "adb"
    fake.write_text("#!/bin/sh\necho 'error: no devices/emulators found' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    no_phone = profile.model_copy(update={"adb": profile.adb.model_copy(update={"adb": str(fake)})})
    with pytest.raises(MeasurementError, match="Android device not reachable: error: no devices/emulators found"):
        check_device(no_phone)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 32)
    with pytest.raises(MeasurementError, match="not reachable"):
        measure_file(no_phone, model)
    assert os.path.exists(fake)


def test_calibrate_prints_a_reference_block_that_loads(tmp_path):
    from typer.testing import CliRunner

    from latency_service.cli import app

    profile = write_profile(tmp_path / "p.yaml")
    result = CliRunner().invoke(app, ["calibrate", "--device", str(profile), "--rounds", "3"])
    assert result.exit_code == 0, result.output
    block = result.output[result.output.index("reference:"):]
    (tmp_path / "steady.yaml").write_text(profile.read_text() + block)
    steady = load_profile(tmp_path / "steady.yaml")
    assert steady.reference.model == "mnasnet-a1-64" and 0.05 < steady.reference.latency_ms < 100
    # measuring the reference on the calibrated profile gives back its calibration
    assert measure_file(steady, steady.reference.path)["latency_ms"] == pytest.approx(steady.reference.latency_ms, rel=0.3)
    bad = CliRunner().invoke(app, ["calibrate", "--device", str(profile), "--reference", str(tmp_path / "none.onnx")])
    assert bad.exit_code == 2 and "reference model not found" in bad.output


def test_backends_are_one_registry_read_by_profiles_health_and_measuring(tmp_path):
    from devices.backends import BACKENDS, backend
    from devices.profile import DeviceProfile, ProfileError, load_profile
    from devices.worker import MODELS

    assert set(BACKENDS) == {"onnxruntime", "litert", "android-adb"}
    assert {n for n, b in BACKENDS.items() if not b.remote} == set(MODELS)  # every local backend has its worker model
    assert load_profile("x86-ort-1t").model_format == "onnx" and load_profile("x86-litert-1t").model_format == "tflite"
    assert backend("android-adb").remote and backend("onnxruntime").profiles_per_operator
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbackend: coreml\n")
    with pytest.raises(ProfileError, match="unknown backend 'coreml'; use one of onnxruntime, litert, android-adb"):
        load_profile(bad)
    assert DeviceProfile(name="p", backend="litert").kind.runtime_module == "ai_edge_litert"
