"""Reading a user's YAML file: one clear error for a missing file, bad YAML or a non-mapping."""

from __future__ import annotations

from pathlib import Path

import yaml

from mnas.errors import MnasError


def read_yaml_mapping(path: str | Path, error: type[MnasError], what: str) -> dict:
    """The file's top-level mapping; ``error`` (naming ``what`` and the path) for anything else."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} is a YAML mapping")
    return data
