"""Measurement errors, each with a ``kind`` that tells the caller whose fault it is."""

# kinds the caller caused (a bad file, a bad shape, an op the runtime lacks): HTTP 4xx
INPUT_KINDS = {"empty_file", "not_a_model", "corrupt_model", "bad_input_shape", "unsupported_op"}


class MeasurementError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

    @property
    def is_input_error(self) -> bool:
        return self.kind in INPUT_KINDS


class ProfileError(Exception):
    """A device profile YAML is missing or invalid."""
