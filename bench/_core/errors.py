"""The one exception type users see: a message that names the file, patient or key, and the fix."""


class BenchError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits non-zero."""
