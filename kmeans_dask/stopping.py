"""A long-running command stops when asked: after Ctrl+C the process exits within a grace
period, however the code it runs handles the interrupt.

``kmeans-dask serve`` runs Prefect's runner until interrupted. Its own shutdown (pausing the
schedule, waiting for its task groups) normally takes a few seconds; once, on a loaded
machine, a Ctrl+C left it serving for over 90 s with no sign of shutting down (the
interrupt was lost inside its event loop). :func:`exits_within` makes the bound ours: the
first Ctrl+C starts a timer and then asks the block to stop (``KeyboardInterrupt``, or a
callback); when the block has not ended when the timer fires, or on a second Ctrl+C, the
process exits at once with 130.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["EXIT_INTERRUPTED", "STOP_GRACE", "exits_within"]

EXIT_INTERRUPTED = 130
#: seconds a command may take to stop after Ctrl+C before the process exits without it
STOP_GRACE = 30.0


@contextmanager
def exits_within(
    grace: float = STOP_GRACE,
    what: str = "kmeans-dask",
    on_interrupt: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Inside the block, Ctrl+C (SIGINT) asks the block to stop and guarantees it does within
    ``grace`` seconds: unless the block has ended by then, a daemon timer exits the process
    with :data:`EXIT_INTERRUPTED` (``os._exit``: no further cleanup), as does a second Ctrl+C.

    Parameters
    ----------
    grace : float
        Seconds from the first Ctrl+C to the forced exit.
    what : str
        The command, as the messages on stderr name it.
    on_interrupt : callable, optional
        Called (in the main thread, from the signal handler) to ask the block to stop, e.g.
        to cancel an asyncio task; by default the handler raises ``KeyboardInterrupt``.

    Outside the main thread the block runs unchanged. The previous handler comes back when
    the block ends, and a timer still running is cancelled.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    timer: list[threading.Timer] = []

    def leave(reason: str) -> None:
        print(f"{what}: {reason}; exiting now", file=sys.stderr, flush=True)
        os._exit(EXIT_INTERRUPTED)

    def interrupted(signum: int, frame: object) -> None:
        if timer:
            leave("interrupted again")
        # set before anything can fail, so that a second Ctrl+C always exits
        timer.append(
            threading.Timer(grace, leave, args=(f"not stopped {grace:g} s after Ctrl+C",))
        )
        timer[0].daemon = True
        timer[0].start()
        print(
            f"{what}: stopping (up to {grace:g} s; Ctrl+C again to exit at once)",
            file=sys.stderr,
            flush=True,
        )
        if on_interrupt is None:
            raise KeyboardInterrupt
        on_interrupt()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        for t in timer:
            t.cancel()
