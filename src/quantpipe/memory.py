"""This process's memory, as the serving and seq2seq measurements read it: resident now, and its peak."""

from __future__ import annotations

import re
from pathlib import Path

from quantpipe.errors import QuantpipeError


def rss_bytes() -> int:
    """The resident memory of this process now."""
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss_bytes() -> int:
    """The peak resident memory of this process since it started (`VmHWM`, Linux). Not getrusage's ru_maxrss,
    which Linux carries over `exec` from the parent: a child of a larger process would report the parent's peak."""
    found = re.search(r"^VmHWM:\s+(\d+) kB$", Path("/proc/self/status").read_text(), re.MULTILINE)
    if found is None:
        raise QuantpipeError("/proc/self/status: no VmHWM line (peak memory is measured on Linux only)")
    return int(found.group(1)) * 1024
