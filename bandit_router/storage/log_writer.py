"""Group commit for the decision log: one transaction per batch of concurrent decisions.

Each /route waits until its decision is committed, but concurrent requests share the commit,
so its cost is paid per batch, not per decision. Two ways to batch, one per kind of database:

- `TickCommitLog` (SQLite): the decisions made during one turn of the event loop are written
  at the end of that turn, in the loop's own thread. An SQLite commit in WAL mode is a write
  to the page cache, shorter than a thread hand-off, and no second thread competes for the
  interpreter.
- `GroupCommitLog` (PostgreSQL): a writer thread takes everything queued since its last
  transaction; the loop never waits on the network. The waiters of a batch are woken by one
  call into their event loop, not one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import defaultdict

from bandit_router.core import StorageUnavailable
from bandit_router.storage.base import DecisionRecord, DecisionStore

_STOP = object()
_Waiter = tuple[DecisionRecord, "asyncio.Future[None]"]


def _settle(futures: list[asyncio.Future[None]], error: Exception | None) -> None:
    for future in futures:
        if future.done():  # the request was cancelled (client gone); its row is written anyway
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class GroupCommitLog:
    """A DecisionLog that batches concurrent appends into one transaction."""

    def __init__(self, store: DecisionStore, *, max_batch: int = 256) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="decision-log-writer", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Writes what is queued, then ends the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    async def append(self, record: DecisionRecord) -> None:
        if self._thread is None:
            raise StorageUnavailable("the decision log is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((record, future))
        await future

    def _next_batch(self) -> tuple[list[_Waiter], bool]:
        items = [self._queue.get()]
        while len(items) < self._max_batch:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        stopping = any(item is _STOP for item in items)
        return [item for item in items if item is not _STOP], stopping  # type: ignore[misc]

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            if not batch:
                continue
            error: Exception | None = None
            try:
                self._store.insert_decisions([record for record, _ in batch])
            except Exception as failure:  # noqa: BLE001 - every waiter must hear of it
                error = StorageUnavailable(f"the decision log could not be written: {failure}")
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = defaultdict(list)
            for _, future in batch:
                by_loop[future.get_loop()].append(future)
            for loop, futures in by_loop.items():
                # A closed loop raises RuntimeError: nobody is waiting there any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, futures, error)


class TickCommitLog:
    """A DecisionLog that commits, at the end of each event-loop turn, that turn's decisions."""

    def __init__(self, store: DecisionStore) -> None:
        self._store = store
        self._pending: list[_Waiter] = []
        self._running = False

    def start(self) -> None:
        self._running = True

    def stop(self) -> None:
        """Nothing is left to write: every append is written before the loop turns again."""
        self._running = False

    async def append(self, record: DecisionRecord) -> None:
        if not self._running:
            raise StorageUnavailable("the decision log is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            # Runs after every callback already due in this turn: their decisions join.
            loop.call_soon(self._flush)
        self._pending.append((record, future))
        await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        error: Exception | None = None
        try:
            self._store.insert_decisions([record for record, _ in batch])
        except Exception as failure:  # noqa: BLE001 - every waiter must hear of it
            error = StorageUnavailable(f"the decision log could not be written: {failure}")
        _settle([future for _, future in batch], error)
