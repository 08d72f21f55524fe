"""Machine and version line printed with every benchmark table."""

import datetime
import os
import platform


def machine_line() -> str:
    import torch

    parts = [
        datetime.date.today().isoformat(),
        platform.processor() or platform.machine(),
        f"{os.cpu_count()} CPUs",
        f"Python {platform.python_version()}",
        f"torch {torch.__version__}",
    ]
    if torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    else:
        parts.append("no GPU")
    try:
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        pass
    return ", ".join(parts)
