"""Start the real latency service (the installed console script) on a free loopback port."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

FAST_PROFILE = """\
name: {name}
backend: {backend}
threads: 1
warmup_runs: 3
timed_runs: 15
repeats: 2
max_cv: 10.0
max_remeasure: 0
timeout_s: 60
"""


def write_profile(path: Path, backend: str = "onnxruntime", name: str = "test-ort") -> Path:
    path.write_text(FAST_PROFILE.format(name=name, backend=backend))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, profile: Path | list[Path], db: Path, token: str | None = None, exe: Path | None = None, extra: list[str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db
        exe = exe or Path(sys.executable).with_name("mnas-latency")
        devices = [a for p in (profile if isinstance(profile, list) else [profile]) for a in ("--device", str(p))]
        cmd = [str(exe), "serve", *devices, "--port", str(self.port), "--db", str(db), *(extra or [])]
        if token:
            cmd += ["--token", token]
        self.log = db.with_suffix(".log").open("w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {db.with_suffix('.log').read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("service did not start in 60 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
