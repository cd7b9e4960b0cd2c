"""The one exception for bad user input."""


class UsageError(ValueError):
    """Bad user input: the CLI prints the message as one line and exits 2 (no traceback, nothing written)."""
