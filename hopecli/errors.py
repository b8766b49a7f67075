"""Errors a user sees. Library code raises these; the CLI turns them into one line."""


class HopeError(Exception):
    """A user-facing problem: bad input, a mismatched store, a missing file.

    The message is one sentence that names the file (when there is one) and what is wrong.
    """


class InputError(HopeError):
    """A file given by the user cannot be used (corrupt video, missing sidecar, bad shape)."""


class StoreMismatchError(HopeError):
    """An existing store was made with another encoder or other settings."""


class CheckpointError(HopeError):
    """A weights file has missing or unexpected keys, or cannot be read safely."""
