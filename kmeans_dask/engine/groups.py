"""One call per worker per pass: persisted blocks grouped by the worker that holds them.

An iterative pass (a Lloyd E-step) over ``b`` blocks as ``b`` tasks costs a scheduler round
trip plus per-task overhead: measured here, a ``client.map`` + ``gather`` of 2 tasks that do
nothing took ~27 ms and of 16 tasks ~67 ms, against ~5 ms for one call on each of 2 actors.
So for the iterations, one :class:`GroupActor` per worker holds references to the blocks
already on that worker (no copy) plus any per-block state of the pass (bounds), runs the
per-block function over them (on the worker's task threads) and reduces the partials
to the tree nodes of :mod:`.tree` before anything leaves the worker. The centres go to each
worker once per iteration; only one small partial per tree node comes back.

Actor calls go from the client straight to the workers. When a call fails because a worker
was lost, the actors are rebuilt on the blocks (which the scheduler recomputes from their
graph) and the pass is repeated without state; where the client cannot reach the workers
directly, or with ``kmeans_dask.worker-groups: false`` (dask config), the caller uses one
task per block instead. Both give bit-identical partials (:mod:`.tree`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import dask

from .tree import Node, cover, reduce_local, reduce_root

__all__ = [
    "GROUPS_KEY",
    "GroupActor",
    "GroupsUnavailable",
    "WorkerGroups",
    "reduce_group",
    "use_groups",
]

logger = logging.getLogger(__name__)

#: dask config key: run iterative passes as one actor call per worker (default True)
GROUPS_KEY = "kmeans_dask.worker-groups"

#: a per-block pass: ``func(block, state, **broadcast) -> (partial, new_state)``
PassFunc = Callable[..., tuple[Any, Any]]


def use_groups() -> bool:
    """Whether iterative passes may use per-worker actors (dask config ``worker-groups``)."""
    return bool(dask.config.get(GROUPS_KEY, True))


def _call(func: PassFunc, block: Any, state: Any, broadcast: dict) -> tuple[Any, Any]:
    return func(block, state, **broadcast)


def reduce_group(indices: Sequence[int], n_blocks: int, partials: Sequence[Any]) -> dict[Node, Any]:
    """The partials of one worker's blocks (aligned with ``indices``) added up to the tree
    nodes they cover."""
    leaves = dict(zip(indices, partials, strict=True))
    return {node: reduce_local(leaves, node) for node in cover(indices, n_blocks)}


class GroupActor:
    """Lives on one worker (a ``distributed`` actor): the blocks it was given, in block
    order, and the per-block states of the pass run through it.

    :meth:`run` is a coroutine: the blocks are computed on the worker's own task threads
    (the compiled kernels release the GIL), so calls of concurrent fits (a K sweep) share
    the worker's threads as their tasks would, and nothing waits on the actor's one thread.
    """

    def __init__(self, indices: list[int], n_blocks: int, *blocks: Any) -> None:
        self.indices = list(indices)
        self.n_blocks = n_blocks
        self.blocks = blocks
        self.states: list = [None] * len(blocks)

    async def run(self, func: PassFunc, fresh: bool, broadcast: dict) -> dict[Node, Any]:
        """One pass; ``fresh`` drops the states first. Returns the node partials."""
        from distributed import get_worker

        loop = asyncio.get_running_loop()
        pool = get_worker().executors.get("default")
        states = [None] * len(self.blocks) if fresh else self.states
        results = await asyncio.gather(
            *[
                loop.run_in_executor(pool, _call, func, block, state, broadcast)
                for block, state in zip(self.blocks, states, strict=True)
            ]
        )
        self.states = [r[1] for r in results]
        return reduce_group(self.indices, self.n_blocks, [r[0] for r in results])

    async def lead(
        self, peers: list[tuple[str, str]], body: Callable[..., Awaitable[Any]], *args: Any
    ) -> Any:
        """``await body(run_pass, *args)`` here, where ``await run_pass(func, fresh,
        broadcast)`` is one pass over this actor's blocks and its ``peers``' (the other
        workers' actors, as ``(address, key)``), reduced to the total partial: iterations led
        by this worker without a round trip to the client per pass (:mod:`.drive`)."""

        async def run_pass(func: PassFunc, fresh: bool, broadcast: dict) -> Any:
            # the peers' calls first: their messages are written before this worker's own
            # blocks start (which would hold up this event loop's serialisation)
            calls = [_call_peer(a, key, "run", func, fresh, broadcast) for a, key in peers]
            parts = await asyncio.gather(*calls, self.run(func, fresh, broadcast))
            nodes: dict[Node, Any] = {}
            for part in parts:
                nodes.update(part)
            return reduce_root(nodes, self.n_blocks)

        return await body(run_pass, *args)


async def _call_peer(address: str, key: str, method: str, *args: Any) -> Any:
    """``method(*args)`` of the actor ``key`` on the worker at ``address``, called from a
    worker through its own connection pool.

    Not through an actor proxy: a proxy that cannot reach its worker waits for the actor's
    key to be computed again before it retries, and from a worker that wait never ended when
    a peer was killed (measured). Here a lost peer fails the call at once (``OSError``, or
    ``KeyError`` from a restarted worker without the actor), and the client rebuilds."""
    from distributed import get_worker
    from distributed.protocol import to_serialize

    reply = await get_worker().rpc(address).actor_execute(
        actor=key, function=method, args=[to_serialize(a) for a in args], kwargs={}
    )
    if reply["status"] != "OK":
        raise reply["exception"]
    return reply["result"]


class GroupsUnavailable(RuntimeError):
    """The per-worker actors cannot be reached: the caller falls back to one task per block."""


class WorkerGroups:
    """One :class:`GroupActor` per worker over a persisted :class:`BlockSet`'s blocks.

    Build with :meth:`start` (returns None when actors cannot be used), call :meth:`run` once
    per pass, :meth:`close` at the end.
    """

    def __init__(self, bs: Any) -> None:
        self.bs = bs
        self.client = bs.client
        self._futures: list = []
        self._actors: list = []
        self._places: list[tuple[str, str]] = []  # (worker address, key) of every actor

    @classmethod
    def start(cls, bs: Any) -> WorkerGroups | None:
        """Actors over ``bs`` (persisted, on a cluster), or None where they cannot run."""
        if bs.client is None or bs.streamed or not use_groups() or bs.n_blocks == 0:
            return None
        groups = cls(bs)
        try:
            groups._build()
        except Exception as exc:  # e.g. the workers are not reachable from the client
            logger.warning("per-worker passes unavailable (%s); using one task per block", exc)
            groups.close()
            return None
        return groups

    def _build(self) -> None:
        from distributed import wait

        bs, client = self.bs, self.client
        wait(bs.handles)
        nthreads = client.nthreads()
        who = client.who_has(bs.handles)
        by_worker: dict[str, list[int]] = {}
        for i, h in enumerate(bs.handles):
            held = [w for w in who.get(h.key, ()) if w in nthreads]
            w = held[0] if held else min(nthreads, key=lambda a: len(by_worker.get(a, ())))
            by_worker.setdefault(w, []).append(i)
        tag = "kmeans-dask-group" if bs._exec.tag is None else f"{bs._exec.tag}-group"
        self._futures = [
            client.submit(
                GroupActor,
                idx,
                bs.n_blocks,
                *[bs.handles[i] for i in idx],
                workers=[w],
                allow_other_workers=True,
                actor=True,
                pure=False,
                key=f"{tag}-{uuid.uuid4().hex}",
            )
            for w, idx in by_worker.items()
        ]
        self._actors = [f.result() for f in self._futures]
        where = client.who_has(self._futures)  # where each actor lives (it may have moved)
        self._places = [(where[f.key][0], f.key) for f in self._futures]

    def run(self, func: PassFunc, fresh: bool = False, **broadcast: Any) -> tuple[Any, bool]:
        """One pass over every block: the total partial (reduced along the block tree) and
        whether it ran without the states (``fresh``, or a worker was lost: then the actors
        are rebuilt and the pass repeated once)."""
        try:
            return self._run(func, fresh, broadcast), fresh
        except (OSError, KeyError) as exc:
            _reraise_unless_lost(exc, "a pass; repeating the pass")
        self._release()
        self._build()
        try:
            return self._run(func, True, broadcast), True
        except (OSError, KeyError) as exc:
            _reraise_unless_lost(exc, "the repeated pass")
            # twice in a row: the workers are not reachable from here (e.g. behind a gateway)
            self._release()
            raise GroupsUnavailable(str(exc)) from exc

    def lead(self, body: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``body(run_pass, *args)`` run by the first worker's actor
        (:meth:`GroupActor.lead`), or None when a worker was lost (the actors are rebuilt
        and the per-block states dropped: the caller repeats the work from the client)."""
        try:
            return self._actors[0].lead(self._places[1:], body, *args).result()
        except (OSError, KeyError) as exc:
            _reraise_unless_lost(exc, "led iterations; rebuilding")
        self._release()
        self._build()
        return None

    def _run(self, func: PassFunc, fresh: bool, broadcast: dict) -> Any:
        async def calls() -> list:
            # one hop into the client's event loop for all calls, not one per call and result
            return await asyncio.gather(*[a.run(func, fresh, broadcast) for a in self._actors])

        nodes: dict[Node, Any] = {}
        for part in self.client.sync(calls):
            nodes.update(part)
        return reduce_root(nodes, self.bs.n_blocks)

    def _release(self) -> None:
        for f in self._futures:
            f.release()
        for actor in self._actors:
            _release_proxy(actor)
        self._futures, self._actors, self._places = [], [], []

    def close(self) -> None:
        """Release the actors (and with them the states they hold)."""
        self._release()


def _release_proxy(actor: Any) -> None:
    """Drop the key reference an actor proxy holds itself.

    Every method call on a ``distributed`` actor proxy builds a coroutine closure that refers to
    itself and to the proxy (distributed 2025-2026, ``Actor.__getattr__``), a reference cycle:
    the proxy, and the future it keeps on its actor's key, live until Python's cyclic garbage
    collector runs. Until then the scheduler keeps the actor, and with it every block it
    references, on the worker (measured: a persisted job's blocks stayed on the workers for
    more than 30 s after it returned). Releasing that future now frees them at once; a future
    releases its key only once, so the proxy's own release when it is collected does nothing.
    """
    future = getattr(actor, "_future", None)
    if future is not None:
        future.release()


def _reraise_unless_lost(exc: BaseException, during: str) -> None:
    """Re-raise ``exc`` (being handled) unless it says a worker was lost; else log that."""
    if not _is_lost_worker(exc):
        raise exc
    logger.warning("a worker was lost during %s (%s)", during, exc)


def _is_lost_worker(exc: BaseException) -> bool:
    # a closed comm (the worker died) or an actor the restarted worker no longer has
    from distributed.comm.core import CommClosedError

    if isinstance(exc, CommClosedError | ConnectionError | KeyError):
        return True
    return isinstance(exc, OSError) and "timed out" not in str(exc).lower()
