"""User-facing errors.

Everything a user can get wrong (a bad architecture, a missing dataset, a corrupt file)
raises a subclass of :class:`MnasError`; the CLI prints its message, without a
traceback, and exits with status 2.
"""


class MnasError(Exception):
    """An error caused by the user's input, with a message that names the problem."""


class ArchitectureError(MnasError, ValueError):
    """An architecture (JSON, timm strings or a preset name) is invalid."""


class DataError(MnasError):
    """A dataset spec points at missing or malformed data."""


class ExportError(MnasError):
    """A model could not be exported to the requested format."""


class SpaceError(MnasError):
    """A search-space file is missing, malformed, or describes an impossible space."""
