"""The devices one service measures on: a queue and one measurement at a time per device,
pools of devices of one kind served by their first free member, and member health.

A request names a *target*: a device by its profile's name, or a pool by the ``pool`` its
members' profiles share. Members of a pool must measure alike (same ``kind_hash``: the
settings without name, pinned CPUs and adb serial); their results are cached per pool. A
member whose device fails (``device_unavailable``, or timeouts twice in a row) is taken out
with that reason as its status, its request goes to another member, and the health
monitor puts it back once its check passes (``devices.health``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from devices.profile import DeviceProfile

UNHEALTHY_KINDS = {"device_unavailable": 1, "timeout": 2}  # error kind -> consecutive errors that take a member out


class NoDevice(Exception):
    """No member of the target can measure now."""


@dataclass(eq=False)
class Member:
    profile: DeviceProfile
    busy: bool = False
    problem: str | None = None  # None: healthy
    measured: int = 0
    strikes: dict = field(default_factory=dict)
    targets: list = field(default_factory=list)  # the targets that hand this member out

    @property
    def name(self) -> str:
        return self.profile.name


class Target:
    """A device, or a pool of devices of one kind: what a request is measured on."""

    def __init__(self, name: str, members: list[Member], pooled: bool):
        self.name, self.members, self.pooled = name, members, pooled
        first = members[0].profile
        self.cache_hash = f"pool-{name}-{first.kind_hash()}" if pooled else first.settings_hash()
        self.waiting = 0
        self.cond = asyncio.Condition()
        for m in members:
            m.targets.append(self)

    @property
    def profile(self) -> DeviceProfile:
        """The settings every member shares (format, precisions, kind)."""
        return self.members[0].profile

    def healthy(self) -> list[Member]:
        return [m for m in self.members if m.problem is None]

    def _free(self) -> Member | None:
        return next((m for m in self.members if m.problem is None and not m.busy), None)

    async def acquire(self, timeout_s: float) -> Member:
        """The first free healthy member, waiting up to ``timeout_s``; NoDevice if none is healthy."""
        async with self.cond:
            self.waiting += 1
            try:
                await asyncio.wait_for(self.cond.wait_for(lambda: self._free() is not None or not self.healthy()), timeout_s)
            finally:
                self.waiting -= 1
            if not self.healthy():
                raise NoDevice(self.unavailable_reason())
            member = self._free()
            member.busy = True
            return member

    def unavailable_reason(self) -> str:
        what = f"every member of pool {self.name}" if self.pooled else f"device {self.name}"
        return f"{what} is out of service: " + "; ".join(f"{m.name}: {m.problem}" for m in self.members)

    def describe(self) -> dict:
        return {"name": self.name, "kind": "pool" if self.pooled else "device", "members": [m.name for m in self.members],
                "kind_hash": self.profile.kind_hash(), "hash": self.cache_hash, "model_format": self.profile.model_format,
                "precisions": self.profile.precisions, "queue_length": self.waiting + sum(m.busy for m in self.members),
                "free": sum(1 for m in self.members if m.problem is None and not m.busy), "healthy": len(self.healthy())}


class Farm:
    """Every device and pool of one service."""

    def __init__(self, profiles: list[DeviceProfile]):
        if not profiles:
            raise ValueError("a latency service needs at least one device profile")
        names = [p.name for p in profiles]
        if len(set(names)) != len(names):
            raise ValueError(f"device names must differ (got {names})")
        self.members = [Member(p) for p in profiles]
        self.targets: dict[str, Target] = {m.name: Target(m.name, [m], pooled=False) for m in self.members}
        pools: dict[str, list[Member]] = {}
        for m in self.members:
            if m.profile.pool:
                pools.setdefault(m.profile.pool, []).append(m)
        for pool, members in pools.items():
            if pool in self.targets:
                raise ValueError(f"pool {pool!r} has the name of a device")
            kinds = {m.profile.kind_hash() for m in members}
            if len(kinds) > 1:
                raise ValueError(f"pool {pool!r} mixes devices that measure differently ({', '.join(m.name for m in members)}): "
                                 "its members' profiles must match except name, cpus and adb serial")
            self.targets[pool] = Target(pool, members, pooled=True)
        self.pools = sorted(pools)

    def default_target(self) -> Target | None:
        """The target of a request that names none: the only device, or the only pool holding them all."""
        if len(self.members) == 1:
            return self.targets[self.members[0].name]
        if len(self.pools) == 1 and len(self.targets[self.pools[0]].members) == len(self.members):
            return self.targets[self.pools[0]]
        return None

    def target(self, name: str | None) -> Target:
        """The named target; KeyError with the choices when it is unknown or missing."""
        if name:
            if name not in self.targets:
                raise KeyError(f"no device or pool {name!r} here; this service has {', '.join(sorted(self.targets))}")
            return self.targets[name]
        default = self.default_target()
        if default is None:
            raise KeyError(f"this service has several devices: name one with device=NAME ({', '.join(sorted(self.targets))})")
        return default

    async def release(self, member: Member, error_kind: str | None = None, error: str | None = None) -> None:
        """Free ``member`` after a measurement; an error of an unhealthy kind counts against it."""
        if error_kind in UNHEALTHY_KINDS:
            member.strikes[error_kind] = member.strikes.get(error_kind, 0) + 1
            if member.strikes[error_kind] >= UNHEALTHY_KINDS[error_kind]:
                member.problem = error or error_kind
        else:
            member.strikes.clear()
        member.busy = False
        await self.notify(member)

    async def notify(self, member: Member) -> None:
        for t in member.targets:
            async with t.cond:
                t.cond.notify_all()

    async def check_health(self, check) -> None:
        """Run ``check(profile) -> problem or None`` on every idle member (in a thread); put
        recovered members back, take failing ones out."""
        for m in self.members:
            if m.busy:
                continue
            problem = await asyncio.to_thread(check, m.profile)
            if problem != m.problem:
                m.problem = problem
                m.strikes.clear()
                await self.notify(m)

    def describe_devices(self) -> list[dict]:
        out = []
        for m in self.members:
            p = m.profile
            own = self.targets[m.name]
            out.append({"name": p.name, "pool": p.pool, "hash": p.settings_hash(), "kind_hash": p.kind_hash(), "backend": p.backend,
                        "model_format": p.model_format, "threads": p.threads, "cpus": p.cpus, "description": p.description,
                        "precisions": p.precisions, "queue_length": own.waiting + int(m.busy), "busy": m.busy,
                        "healthy": m.problem is None, "status": "ok" if m.problem is None else f"out of service: {m.problem}",
                        "measured": m.measured})
        return out
