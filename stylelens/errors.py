"""The one exception type users see: its message is a single line that names the problem and the valid choices."""


class StylelensError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits non-zero, without a traceback."""
