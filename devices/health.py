"""Is a device able to measure right now? (the service takes a pool member out while not)."""

from __future__ import annotations

from devices.errors import MeasurementError
from devices.profile import DeviceProfile


def device_problem(profile: DeviceProfile) -> str | None:
    """None when the device can measure; otherwise what is wrong, in one line."""
    if profile.kind.remote:
        from devices.android import check_device

        try:
            check_device(profile)
        except MeasurementError as exc:
            return str(exc)
        return None
    import importlib.util

    from devices.local import missing_cpus

    if missing := missing_cpus(profile):
        return f"pins to CPUs {missing}, which this machine lacks"
    module = profile.kind.runtime_module
    if importlib.util.find_spec(module) is None:
        return f"the {module} runtime is not installed"
    return None
