"""Executors run trials behind one interface (``Executor``): capacity, submit, poll, cancel, close.

``local``: each trial is a fresh process, forked from a server that has imported torch
once (``search.trials.process``), so a crash, a CUDA OOM or a leak ends with its trial.
Slots = GPUs x trials_per_gpu, dealt round-robin over the GPUs (a ``max_parallel`` below that
still uses every GPU), each pinned to its GPU with CUDA_VISIBLE_DEVICES; without a GPU,
``max_parallel`` CPU slots. Either way the slots split the CPU cores between them (a trial
packed on a GPU still runs its data preparation and launches on CPU threads).
``ray``: the same trial function as Ray tasks with ``num_gpus = 1 / trials_per_gpu`` on an
existing cluster (``ray_address``) or a local Ray.

A trial that ends in any way (result, crash, timeout, ``cancel``) comes back exactly once
from ``poll`` as a ``Finished`` with a ``TrialResult``; the loop records it in one place.
"""

from __future__ import annotations

import os
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from search.trials.process import TrialProcess, start_trial
from search.trials.spec import TrialResult, TrialSpec


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no CUDA runtime at all
        return 0


def split_threads(cores: int, parallel: int, cap: str = "") -> int:
    """CPU threads for each of ``parallel`` trials: ``cores`` split between them, never more than
    ``cap`` (OMP_NUM_THREADS) when set: more threads than cores makes torch's OpenMP spin-wait,
    which slowed 1-epoch trials ~10x when two searches shared two cores."""
    threads = max(1, cores // max(1, parallel))
    return min(threads, int(cap)) if cap.isdigit() and int(cap) > 0 else threads


def threads_per_trial(parallel: int) -> int:
    """``split_threads`` over this process's usable cores and its OMP_NUM_THREADS."""
    from devices.local import available_cpus

    return split_threads(len(available_cpus()), parallel, os.environ.get("OMP_NUM_THREADS", ""))


def trial_slots(gpus: int, trials_per_gpu: int, max_parallel: int, cores: int, host: str, cap: str = "") -> list[dict]:
    """The local executor's slots: name (slot@host, recorded with each trial), environment, threads.

    GPU slots go round-robin (gpu0.0, gpu1.0, ..., gpu0.1, ...), so cutting the list at
    ``max_parallel`` spreads the trials over every GPU rather than filling the first ones."""
    if gpus:
        count = max(1, min(gpus * trials_per_gpu, max_parallel))
        threads = split_threads(cores, count, cap)
        order = [(g, k) for k in range(trials_per_gpu) for g in range(gpus)][:count]
        return [{"name": f"gpu{g}.{k}@{host}", "env": {"CUDA_VISIBLE_DEVICES": str(g), "OMP_NUM_THREADS": str(threads)}, "threads": threads}
                for g, k in order]
    threads = split_threads(cores, max_parallel, cap)
    return [{"name": f"cpu{k}@{host}", "env": {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads)}, "threads": threads}
            for k in range(max_parallel)]


@dataclass(frozen=True)
class Finished:
    trial_id: int
    worker: str
    result: TrialResult


def timed_out(timeout_s: float) -> TrialResult:
    return TrialResult.failure("timeout", f"trial ran over trial_timeout_s = {timeout_s:g} s")


def cancelled() -> TrialResult:
    return TrialResult.failure("cancelled", "stopped by the search")


class Executor(ABC):
    """Runs trial specs on slots; a context manager that closes itself."""

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many trials can run at once."""

    @abstractmethod
    def running(self) -> int:
        """How many trials are running now."""

    def free_slots(self) -> int:
        return self.capacity - self.running()

    @abstractmethod
    def submit(self, spec: TrialSpec) -> str:
        """Start a trial on a free slot; returns the worker's name (recorded with the trial)."""

    @abstractmethod
    def poll(self, timeout: float = 0.5) -> list[Finished]:
        """Trials that ended since the last poll; waits up to ``timeout`` for the first."""

    @abstractmethod
    def cancel(self, trial_id: int) -> bool:
        """Stop a running trial; the next poll returns it as failed ('cancelled'). False if unknown."""

    @abstractmethod
    def close(self) -> None:
        """Stop whatever still runs and release the workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class _Process:
    spec: TrialSpec
    slot: int
    proc: TrialProcess
    result_path: Path
    deadline: float
    forced: TrialResult | None = None  # set when the search ended it (timeout, cancel)


class LocalExecutor(Executor):
    def __init__(self, work_dir: Path, max_parallel: int, trials_per_gpu: int = 1, timeout_s: float = 3600, address: str | None = None):
        self.work_dir = Path(work_dir).resolve()  # trial processes run elsewhere (cwd: the package's root)
        self.timeout_s = timeout_s
        from devices.local import available_cpus

        self.slots = trial_slots(gpu_count(), trials_per_gpu, max_parallel, len(available_cpus()), socket.gethostname(),
                                 os.environ.get("OMP_NUM_THREADS", ""))
        self.procs: dict[int, _Process] = {}

    @property
    def capacity(self) -> int:
        return len(self.slots)

    def running(self) -> int:
        return len(self.procs)

    def submit(self, spec: TrialSpec) -> str:
        used = {p.slot for p in self.procs.values()}
        slot = next(i for i in range(len(self.slots)) if i not in used)
        trial_dir = self.work_dir / "trials" / str(spec.trial_id)
        trial_dir.mkdir(parents=True, exist_ok=True)
        spec = spec.model_copy(update={"torch_threads": self.slots[slot].get("threads")})
        (trial_dir / "spec.json").write_text(spec.to_json())
        result_path = trial_dir / "result.json"
        result_path.unlink(missing_ok=True)
        log_path = trial_dir / "log.txt"
        log_path.write_bytes(b"")
        env = {**os.environ, **self.slots[slot]["env"], "PYTHONUNBUFFERED": "1", "MNAS_SEARCH_PID": str(os.getpid())}
        proc = start_trial(trial_dir / "spec.json", result_path, env, log_path)
        self.procs[spec.trial_id] = _Process(spec, slot, proc, result_path, time.monotonic() + self.timeout_s)
        return self.slots[slot]["name"]

    def poll(self, timeout: float = 0.5) -> list[Finished]:
        deadline = time.monotonic() + timeout
        while True:
            done = []
            for p in list(self.procs.values()):
                if p.forced is None and p.proc.poll() is None and time.monotonic() > p.deadline:
                    self._stop(p, timed_out(self.timeout_s))
                if p.forced is not None:
                    done.append(self._finish(p, p.forced))
                elif (code := p.proc.poll()) is not None:
                    done.append(self._finish(p, self._read(p, code)))
            if done or time.monotonic() >= deadline or not self.procs:
                return done
            time.sleep(0.05)

    def _read(self, p: _Process, code: int) -> TrialResult:
        if p.result_path.is_file():
            try:
                return TrialResult.from_json(p.result_path.read_text())
            except ValueError as exc:
                return TrialResult.failure("crash", f"trial wrote an unreadable result: {exc}")
        log_tail = (p.result_path.parent / "log.txt").read_text(errors="replace")[-1500:]
        return TrialResult.failure("crash", f"trial process exited with status {code} and no result:\n{log_tail}")

    def _stop(self, p: _Process, why: TrialResult) -> None:
        p.proc.kill()
        p.proc.wait()
        p.forced = why

    def cancel(self, trial_id: int) -> bool:
        p = self.procs.get(trial_id)
        if p is None:
            return False
        if p.forced is None:
            self._stop(p, cancelled())
        return True

    def _finish(self, p: _Process, result: TrialResult) -> Finished:
        del self.procs[p.spec.trial_id]
        return Finished(p.spec.trial_id, self.slots[p.slot]["name"], result)

    def close(self) -> None:
        for p in list(self.procs.values()):
            p.proc.kill()
            p.proc.wait()
        self.procs.clear()


class RayExecutor(Executor):
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
        self._capacity = max_parallel
        cpus = ray.cluster_resources().get("CPU", 1)
        self.threads = split_threads(int(cpus), max_parallel)  # GPU tasks too: their data preparation runs on CPU threads
        self.timeout_s = timeout_s
        self.remote = ray.remote(_ray_trial)
        self.tasks: dict = {}  # ref -> (trial_id, deadline)
        self.ended: list[Finished] = []  # cancelled or timed out, reported by the next poll

    @property
    def capacity(self) -> int:
        return self._capacity

    def running(self) -> int:
        return len(self.tasks)

    def submit(self, spec: TrialSpec) -> str:
        spec = spec.model_copy(update={"torch_threads": self.threads})
        ref = self.remote.options(num_gpus=self.num_gpus, num_cpus=1).remote(spec)
        self.tasks[ref] = (spec.trial_id, time.monotonic() + self.timeout_s)
        return f"ray:{'gpu' if self.num_gpus else 'cpu'}"

    def poll(self, timeout: float = 0.5) -> list[Finished]:
        now = time.monotonic()
        for ref, (_trial_id, deadline) in list(self.tasks.items()):
            if now > deadline:
                self._stop(ref, timed_out(self.timeout_s))
        done, self.ended = self.ended, []
        if not self.tasks or done:
            return done
        ready, _ = self.ray.wait(list(self.tasks), num_returns=len(self.tasks), timeout=timeout)
        for ref in ready:
            trial_id, _ = self.tasks.pop(ref)
            try:
                result, node = self.ray.get(ref)
            except Exception as exc:  # the worker died (OOM killer, node lost)
                result, node = TrialResult.failure("crash", f"Ray task failed: {exc}"), "ray"
            done.append(Finished(trial_id, node, result))
        return done

    def _stop(self, ref, why: TrialResult) -> None:
        trial_id, _ = self.tasks.pop(ref)
        self.ray.cancel(ref, force=True)
        self.ended.append(Finished(trial_id, "ray", why))

    def cancel(self, trial_id: int) -> bool:
        for ref, (tid, _) in list(self.tasks.items()):
            if tid == trial_id:
                self._stop(ref, cancelled())
                return True
        return False

    def close(self) -> None:
        for ref in list(self.tasks):
            self.ray.cancel(ref, force=True)
        self.tasks.clear()
        self.ray.shutdown()


def _ray_trial(spec: TrialSpec):
    import ray

    from search.trials.run import run_trial

    context = ray.get_runtime_context()
    return run_trial(spec), f"ray:{context.get_node_id()[:8]}@{ray.util.get_node_ip_address()}"


def make_executor(kind: str, work_dir: Path, max_parallel: int, trials_per_gpu: int, timeout_s: float,
                  ray_address: str | None = None) -> Executor:
    """The registered executor ``kind`` (search.plugins.EXECUTORS)."""
    from search.plugins import EXECUTORS, load

    return load(EXECUTORS, kind)(work_dir, max_parallel, trials_per_gpu, timeout_s, address=ray_address)
