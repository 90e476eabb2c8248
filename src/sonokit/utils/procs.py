"""Helper processes must not outlive the process that started them.

A DataLoader worker whose parent was killed (SIGKILL, the OOM killer) can block for ever on its result pipe and
keep its decoded frames (hundreds of MB) until killed by hand. On Linux the kernel can send the worker a signal
when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere this is a no-op and torch's own watchdog remains.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Ask the kernel to SIGKILL this process when its parent exits; True when that is in place."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent_pid is not None and os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    return True
