"""Executors run trials behind one interface: ``submit``, ``poll``, ``free_slots``, ``shutdown``.

``local``: each trial is a fresh subprocess (``python -m search.trial``), so a crash, a
CUDA OOM or a leak ends with its trial. Slots = GPUs x trials_per_gpu, each slot pinned to
its GPU with CUDA_VISIBLE_DEVICES; without a GPU, ``max_parallel_trials`` CPU slots that
split the cores between them.
``ray``: the same trial function as Ray tasks with ``num_gpus = 1 / trials_per_gpu`` on an
existing cluster (``ray_address``) or a local Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no CUDA runtime at all
        return 0


@dataclass
class Finished:
    trial_id: int
    worker: str
    result: dict


@dataclass
class _Running:
    trial_id: int
    slot: int
    proc: subprocess.Popen
    result_path: Path
    log: object
    deadline: float


class LocalExecutor:
    def __init__(self, work_dir: Path, max_parallel: int, trials_per_gpu: int = 1, timeout_s: float = 3600):
        self.work_dir = Path(work_dir)
        self.timeout_s = timeout_s
        gpus = gpu_count()
        if gpus:
            self.slots = [{"name": f"gpu{g}.{k}", "env": {"CUDA_VISIBLE_DEVICES": str(g)}} for g in range(gpus) for k in range(trials_per_gpu)]
            self.slots = self.slots[: max(1, min(len(self.slots), max_parallel))]
        else:
            threads = max(1, (os.cpu_count() or 1) // max_parallel)
            self.slots = [{"name": f"cpu{k}", "env": {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads)}, "threads": threads} for k in range(max_parallel)]
        self.running: dict[int, _Running] = {}

    @property
    def capacity(self) -> int:
        return len(self.slots)

    def free_slots(self) -> int:
        return len(self.slots) - len(self.running)

    def submit(self, trial_id: int, spec: dict) -> str:
        used = {r.slot for r in self.running.values()}
        slot = next(i for i in range(len(self.slots)) if i not in used)
        trial_dir = self.work_dir / "trials" / str(trial_id)
        trial_dir.mkdir(parents=True, exist_ok=True)
        spec = {**spec, "torch_threads": self.slots[slot].get("threads")}
        (trial_dir / "spec.json").write_text(json.dumps(spec))
        result_path = trial_dir / "result.json"
        result_path.unlink(missing_ok=True)
        log = open(trial_dir / "log.txt", "wb")
        env = {**os.environ, **self.slots[slot]["env"], "PYTHONUNBUFFERED": "1", "MNAS_SEARCH_PID": str(os.getpid())}
        proc = subprocess.Popen(
            [sys.executable, "-m", "search.trial", str(trial_dir / "spec.json"), str(result_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=str(Path(__file__).resolve().parents[1]), start_new_session=True,
        )
        self.running[trial_id] = _Running(trial_id, slot, proc, result_path, log, time.monotonic() + self.timeout_s)
        return self.slots[slot]["name"]

    def poll(self, timeout: float = 0.5) -> list[Finished]:
        deadline = time.monotonic() + timeout
        while True:
            done = []
            for run in list(self.running.values()):
                code = run.proc.poll()
                if code is None and time.monotonic() > run.deadline:
                    run.proc.kill()
                    run.proc.wait()
                    done.append(self._finish(run, {"status": "failed", "error_kind": "timeout", "error": f"trial ran over trial_timeout_s = {self.timeout_s:g} s"}))
                elif code is not None:
                    if run.result_path.is_file():
                        result = json.loads(run.result_path.read_text())
                    else:
                        log_tail = (run.result_path.parent / "log.txt").read_text(errors="replace")[-1500:]
                        result = {"status": "failed", "error_kind": "crash", "error": f"trial process exited with status {code} and no result:\n{log_tail}"}
                    done.append(self._finish(run, result))
            if done or time.monotonic() >= deadline or not self.running:
                return done
            time.sleep(0.05)

    def _finish(self, run: _Running, result: dict) -> Finished:
        run.log.close()
        del self.running[run.trial_id]
        return Finished(run.trial_id, self.slots[run.slot]["name"], result)

    def shutdown(self) -> None:
        for run in list(self.running.values()):
            run.proc.kill()
            run.proc.wait()
            run.log.close()
        self.running.clear()


class RayExecutor:
    def __init__(self, work_dir: Path, max_parallel: int, trials_per_gpu: int = 1, timeout_s: float = 3600, address: str | None = None):
        import ray

        self.ray = ray
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(max_parallel, 1), include_dashboard=False, log_to_driver=False)
        gpus = ray.cluster_resources().get("GPU", 0)
        self.num_gpus = 1.0 / trials_per_gpu if gpus else 0
        self.capacity = max_parallel
        cpus = ray.cluster_resources().get("CPU", 1)
        self.threads = max(1, int(cpus // max_parallel)) if not gpus else None
        self.timeout_s = timeout_s
        self.remote = ray.remote(_ray_trial)
        self.running: dict = {}  # ref -> (trial_id, deadline)

    def free_slots(self) -> int:
        return self.capacity - len(self.running)

    def submit(self, trial_id: int, spec: dict) -> str:
        spec = {**spec, "torch_threads": self.threads}
        ref = self.remote.options(num_gpus=self.num_gpus, num_cpus=1).remote(spec)
        self.running[ref] = (trial_id, time.monotonic() + self.timeout_s)
        return f"ray:{'gpu' if self.num_gpus else 'cpu'}"

    def poll(self, timeout: float = 0.5) -> list[Finished]:
        if not self.running:
            return []
        ready, _ = self.ray.wait(list(self.running), num_returns=len(self.running), timeout=timeout)
        done = []
        for ref in ready:
            trial_id, _ = self.running.pop(ref)
            try:
                result, node = self.ray.get(ref)
            except Exception as exc:  # the worker died (OOM killer, node lost)
                result, node = {"status": "failed", "error_kind": "crash", "error": f"Ray task failed: {exc}"}, "ray"
            done.append(Finished(trial_id, node, result))
        now = time.monotonic()
        for ref, (trial_id, deadline) in list(self.running.items()):
            if now > deadline:
                self.ray.cancel(ref, force=True)
                self.running.pop(ref)
                done.append(Finished(trial_id, "ray", {"status": "failed", "error_kind": "timeout", "error": f"trial ran over trial_timeout_s = {self.timeout_s:g} s"}))
        return done

    def shutdown(self) -> None:
        for ref in list(self.running):
            self.ray.cancel(ref, force=True)
        self.running.clear()
        self.ray.shutdown()


def _ray_trial(spec: dict):
    import ray

    from search.trial import run_trial

    return run_trial(spec), f"ray:{ray.get_runtime_context().get_node_id()[:8]}"


def make_executor(kind: str, work_dir: Path, max_parallel: int, trials_per_gpu: int, timeout_s: float, ray_address: str | None = None):
    if kind == "ray":
        return RayExecutor(work_dir, max_parallel, trials_per_gpu, timeout_s, ray_address)
    return LocalExecutor(work_dir, max_parallel, trials_per_gpu, timeout_s)
