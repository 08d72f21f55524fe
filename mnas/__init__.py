"""mnas: hardware-aware neural architecture search (MnasNet reproduction)."""
__version__ = "0.1.0"
