"""Errors that the command line reports as one clear line and a non-zero exit."""


class StylesegError(Exception):
    """A user-facing error: bad input, a wrong checkpoint, an impossible option."""


class DataError(StylesegError):
    """Input data is missing, unreadable or inconsistent; the message names the file."""


class CheckpointError(StylesegError):
    """A checkpoint is missing, corrupt or does not match the model."""
