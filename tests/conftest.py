import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CIFAR10 = REPO.parent / "shared" / "data" / "cifar10"


def run_cli(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed `mnas` console script the way a user does."""
    exe = Path(sys.executable).with_name("mnas")
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"mnas {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    if not (CIFAR10 / "test.npz").is_file():
        pytest.skip("../shared/data/cifar10 is not present")
    return CIFAR10


# Under pytest-xdist (two workers on two cores) each worker's torch, onnxruntime and trial
# processes get one thread: more threads than cores makes OpenMP spin-wait and trials ~10x
# slower. The workers inherit the controller's environment, so this overrides it there.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
else:
    os.environ.setdefault("OMP_NUM_THREADS", "2")
