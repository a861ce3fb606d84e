"""One exception type for every problem a user can fix (bad params, missing files, bad data)."""


class QuantpipeError(Exception):
    """A user-facing error: its message is one line naming the param or file and what is wrong."""
