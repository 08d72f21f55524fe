"""The controller registry: every kind of controller, its options and how to build it, in one place.

A controller kind is one registration: a name, a pydantic model of its options (``type`` plus its
own fields, each with its bounds) and a factory. The search config's ``controller:`` block is
validated against the registered kind's model, ``mnas controllers compare`` offers the
registered names, and the search builds the controller through its factory. A new controller is
one file (the class, its options, one ``register_controller`` call) and, where it is not shipped,
one line in the config: ``plugins: [my_module]`` imports it before the config is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, ValidationError


class ControllerOptions(BaseModel):
    """A controller's options as the config gives them; subclasses add their fields."""

    model_config = ConfigDict(extra="forbid")
    type: str

    def kwargs(self) -> dict:
        """The factory's keyword arguments (by default every field but ``type``)."""
        return self.model_dump(exclude={"type"})

    @classmethod
    def stored_defaults(cls, stored: dict) -> dict:
        """Values for options a stored config predates, so an old experiment resumes with the
        behaviour it started with rather than today's defaults (none by default)."""
        return {}


@dataclass(frozen=True)
class ControllerKind:
    name: str
    options: type[ControllerOptions]
    factory: Callable  # (cardinalities, seed, tokens=..., **kwargs) -> Controller


_KINDS: dict[str, ControllerKind] = {}


def register_controller(name: str, options: type[ControllerOptions], factory: Callable) -> None:
    """Make ``name`` a controller kind; registering a name again replaces it (a reloaded plug-in)."""
    _KINDS[name] = ControllerKind(name, options, factory)


def controller_names() -> list[str]:
    return list(_KINDS)


def controller_kind(name: str) -> ControllerKind:
    if name not in _KINDS:
        raise ValueError(f"unknown controller {name!r}; use one of {', '.join(_KINDS)}")
    return _KINDS[name]


def parse_controller_options(data) -> ControllerOptions:
    """The ``controller:`` block as its kind's options (a ValueError names the problem)."""
    if isinstance(data, ControllerOptions):
        return data
    data = dict(data or {})
    try:
        kind = controller_kind(data.setdefault("type", "ppo"))
    except ValueError as exc:
        raise ValueError(f"type: {exc}") from None
    try:
        return kind.options.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{where}: {err['msg']}" if where else err["msg"]) from None


def own_options(data: dict) -> dict:
    """Of a stored ``controller:`` block, what the experiment resumes with: its own kind's fields
    (blocks recorded before options were per kind held every kind's), plus the values of options
    added since, as they behaved when it started."""
    kind = controller_kind(data.get("type", "ppo"))
    own = {k: v for k, v in data.items() if k in kind.options.model_fields}
    return {**kind.options.stored_defaults(own), **own}
