"""Errors a user can fix. The CLIs print their message as one line and exit non-zero, never a traceback."""


class LmdniError(Exception):
    """Base class for user-facing errors."""


class DataError(LmdniError):
    """Missing, corrupted, empty or undecodable data."""


class ConfigError(LmdniError):
    """A configuration value that cannot work."""


class CheckpointError(LmdniError):
    """A checkpoint or run directory that cannot be loaded."""


class DivergenceError(LmdniError):
    """A non-finite loss during training."""
