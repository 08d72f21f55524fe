"""A trial process ends with the search that started it."""

from __future__ import annotations

import os
import time


def exit_with_parent(parent: int) -> None:
    """End this trial when the search that started it dies (e.g. SIGKILL), so no orphan keeps a GPU.

    A thread waits on a pidfd of the search (Linux; elsewhere it polls the pid each second).
    The search is not always this process's parent: a trial forked from the warm server
    (``search.trials.process``) has the server as its parent, and the server lives as long as
    its trials. Where the search is the parent, the kernel's PR_SET_PDEATHSIG also covers the
    time before the thread starts.
    """
    import select
    import signal
    import threading

    if parent == os.getppid():
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:  # the search died before this trial got here
        os._exit(3)
    except (AttributeError, OSError):
        pidfd = None

    def watch():
        if pidfd is not None:
            select.select([pidfd], [], [])  # readable once the search has ended
            os._exit(3)
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(3)
            except PermissionError:
                pass

    threading.Thread(target=watch, daemon=True).start()
