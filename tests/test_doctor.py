"""``mnas doctor`` on this machine: every CPU path really runs; the GPU ones say why they did not."""

from __future__ import annotations

import json

import torch
from conftest import run_cli

from search.doctor.checks import FAIL, NOT_RUN, PASS, NotRun, gpu_checks, run_check
from search.doctor.facts import services

CPU_CHECKS = ["proxy trial, cpu, fp32, channels_last", "proxy trial, cpu, fp32, NCHW", "supernet kill and resume (cpu)",
              "one-shot evaluation (cpu)", "export + measure: onnxruntime", "export + measure: LiteRT", "latency service round trip"]


def test_doctor_runs_every_path_of_this_machine(tmp_path):
    r = run_cli("doctor", "--json", "--keep", str(tmp_path), timeout=600)
    report = json.loads(r.stdout)
    assert report["versions"]["torch"] == torch.__version__.split("+")[0] and report["versions"]["onnxruntime"]
    assert "CPUExecutionProvider" in report["versions"]["onnxruntime providers"]
    status = {c["name"]: c for c in report["checks"]}
    for name in CPU_CHECKS:
        assert status[name]["status"] == PASS, status[name]
        assert status[name]["seconds"] > 0 and status[name]["reason"]
    assert "206 tensors equal" in status["supernet kill and resume (cpu)"]["reason"]
    assert "ms" in status["export + measure: LiteRT"]["reason"] and "cache" in status["latency service round trip"]["reason"]
    if not torch.cuda.is_available():
        assert report["gpus"] == []
        gpu = [c for c in report["checks"] if c["name"] not in CPU_CHECKS]
        assert len(gpu) == 7 and all(c["status"] == NOT_RUN and c["reason"] == "no CUDA device" for c in gpu)
    assert (tmp_path / "a1-32.onnx").is_file() and (tmp_path / "a1-32.tflite").is_file()


def test_a_check_ends_in_one_line_and_an_unreachable_service_is_named():
    def broken():
        raise RuntimeError("the runtime crashed\nwith a long trace")

    def absent():
        raise NotRun("needs adb")

    assert (run_check("x", lambda: "fine").status, run_check("x", lambda: "fine").reason) == (PASS, "fine")
    failed = run_check("x", broken)
    assert (failed.status, failed.reason) == (FAIL, "RuntimeError: the runtime crashed")
    assert (run_check("x", absent).status, run_check("x", absent).reason) == (NOT_RUN, "needs adb")
    (down,) = services(["http://127.0.0.1:9"], None)
    assert down["ok"] is False and "127.0.0.1:9" in down["error"]


def test_the_gpu_checks_without_a_gpu_and_the_throughput_only_when_asked():
    checks = dict(gpu_checks(gpus=0, throughput=True))
    assert all(run_check(n, fn).reason == "no CUDA device" for n, fn in checks.items())
    p1 = dict(gpu_checks(gpus=1, throughput=False))["proxy throughput (P1)"]
    assert run_check("p1", p1).status == NOT_RUN and "--gpu" in run_check("p1", p1).reason
