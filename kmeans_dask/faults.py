"""Fault injection for the fault-matrix tests: named points where a run can be made to fail.

``KMEANS_DASK_FAULT="<point>=<action>"`` (several separated by ``;``) makes
:func:`fault_point` act when the run reaches ``<point>``:

* ``kill``: the process kills itself with SIGKILL (a crash: no cleanup, no ``finally``);
* ``raise``: an :class:`InjectedFault` is raised (an error inside the stage).

Points: ``stage:<name>`` at the start of every pipeline stage (plan, read, sweep, fit,
assign, score, model, commit), and in the commit protocol ``commit:before-pointer``,
``commit:after-pointer`` (``_SUCCESS`` written, LATEST not yet) and ``commit:after-latest``.
Unset (the default), a point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["ENV", "InjectedFault", "fault_point"]

ENV = "KMEANS_DASK_FAULT"


class InjectedFault(RuntimeError):
    """Raised at a fault point configured with ``raise``."""


def fault_point(name: str) -> None:
    """Act on ``name`` if ``KMEANS_DASK_FAULT`` names it (see the module docstring)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for item in spec.split(";"):
        point, _, action = item.strip().partition("=")
        if point != name:
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "raise":
            raise InjectedFault(f"fault injected at {name} ({ENV}={spec})")
