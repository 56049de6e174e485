"""Group commit for what a request waits on: one transaction per batch of concurrent records.

Each /route waits until its decision is committed, each gateway answer sampled for grading until
its grading job is, and each /feedback on PostgreSQL until its row is; concurrent requests share
the commit, so its cost is paid per batch, not per record. Each log is given the store's
function that writes a batch in one transaction. Two ways to batch, one per kind of database:

- `TickCommitLog` (SQLite): the records appended during one turn of the event loop are written
  at the end of that turn, in the loop's own thread. An SQLite commit in WAL mode is a write
  to the page cache, shorter than a thread hand-off, and no second thread competes for the
  interpreter. (SQLite's feedback is written on the loop's thread as it arrives.)
- `BatchWriter` (PostgreSQL; `GroupCommitLog` for decisions and grading jobs,
  `GroupCommitFeedbackLog` for feedback): a writer thread takes everything queued since its
  last transaction; the loop never waits on the network. The waiters of a batch are woken by
  one call into their event loop, not one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from bandit_router.core import StorageUnavailable
from bandit_router.storage.base import FeedbackInsert, FeedbackRecord, FeedbackStore

_STOP = object()
Record = TypeVar("Record")
Outcome = TypeVar("Outcome")
WriteBatch = Callable[[list[Record]], object]
"""The store's write of a batch of records, in one transaction."""


def _settle(waiters: list[tuple[asyncio.Future[Outcome], Outcome | Exception]]) -> None:
    for future, outcome in waiters:
        if future.done():  # the request was cancelled (client gone); its row is written anyway
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class BatchWriter(Generic[Record, Outcome]):
    """A writer thread that writes everything submitted since its last batch in one call of
    ``write``, which returns each record's outcome (or its own error) in their order."""

    def __init__(
        self,
        write: Callable[[list[Record]], Sequence[Outcome | Exception]],
        name: str,
        *,
        max_batch: int = 256,
    ) -> None:
        """``name`` says what the log holds, in its thread's name and its errors."""
        self._write = write
        self._name = name
        self._max_batch = max_batch
        # SimpleQueue: its put, on the event loop's thread, takes no Python-level lock (a
        # Queue's took 5% of the loop's time under feedback load, py-spy --gil).
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"{self._name.replace(' ', '-')}-writer", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Writes what is queued, then ends the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    async def submit(self, record: Record) -> Outcome:
        """Returns once the record is committed; StorageUnavailable when it could not be."""
        if self._thread is None:
            raise StorageUnavailable(f"the {self._name} is not running")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.put((record, future))
        return await future

    def _next_batch(self) -> tuple[list[tuple[Record, asyncio.Future[Outcome]]], bool]:
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
            outcomes: Sequence[Outcome | Exception]
            try:
                outcomes = self._write([record for record, _ in batch])
            except Exception as failure:  # noqa: BLE001 - every waiter must hear of it
                error = StorageUnavailable(f"the {self._name} could not be written: {failure}")
                outcomes = [error] * len(batch)
            by_loop: dict[
                asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Outcome | Exception]]
            ] = defaultdict(list)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                by_loop[future.get_loop()].append((future, outcome))
            for loop, waiters in by_loop.items():
                # A closed loop raises RuntimeError: nobody is waiting there any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, waiters)


class GroupCommitLog(Generic[Record]):
    """A log that batches concurrent appends into one transaction, in a writer thread."""

    def __init__(self, write: WriteBatch[Record], name: str, *, max_batch: int = 256) -> None:
        """``name`` says what the log holds, in its thread's name and its errors."""

        def write_all(records: list[Record]) -> list[None]:
            write(records)
            return [None] * len(records)

        self._writer: BatchWriter[Record, None] = BatchWriter(write_all, name, max_batch=max_batch)

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        """Writes what is queued, then ends the thread."""
        self._writer.stop()

    async def append(self, record: Record) -> None:
        """Returns once the record is committed; StorageUnavailable when it could not be."""
        await self._writer.submit(record)


class GroupCommitFeedbackLog:
    """A FeedbackLog that inserts rows as FeedbackStore.insert_feedback does, concurrent ones
    in one transaction (FeedbackStore.insert_feedbacks)."""

    def __init__(self, store: FeedbackStore, *, max_batch: int = 256) -> None:
        self._writer: BatchWriter[FeedbackRecord, FeedbackInsert] = BatchWriter(
            store.insert_feedbacks, "feedback log", max_batch=max_batch
        )

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        """Writes what is queued, then ends the thread."""
        self._writer.stop()

    async def insert(self, record: FeedbackRecord) -> FeedbackInsert:
        return await self._writer.submit(record)


class TickCommitLog(Generic[Record]):
    """A log that commits, at the end of each event-loop turn, that turn's records."""

    def __init__(self, write: WriteBatch[Record], name: str) -> None:
        """``name`` says what the log holds, in its errors."""
        self._write = write
        self._name = name
        self._pending: list[tuple[Record, asyncio.Future[None]]] = []
        self._running = False

    def start(self) -> None:
        self._running = True

    def stop(self) -> None:
        """Nothing is left to write: every append is written before the loop turns again."""
        self._running = False

    async def append(self, record: Record) -> None:
        """Returns once the record is committed; StorageUnavailable when it could not be."""
        if not self._running:
            raise StorageUnavailable(f"the {self._name} is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            # Runs after every callback already due in this turn: their records join.
            loop.call_soon(self._flush)
        self._pending.append((record, future))
        await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        error: StorageUnavailable | None = None
        try:
            self._write([record for record, _ in batch])
        except Exception as failure:  # noqa: BLE001 - every waiter must hear of it
            error = StorageUnavailable(f"the {self._name} could not be written: {failure}")
        _settle([(future, error) for _, future in batch])
