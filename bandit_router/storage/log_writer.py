"""Group commit for the decision log: one writer thread, one transaction per batch.

Each /route waits until its decision is committed, but concurrent requests share the commit:
the writer takes everything queued since its last transaction and writes it at once, so the
cost of a commit is paid per batch, not per decision.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Future

from bandit_router.core import StorageUnavailable
from bandit_router.storage.base import DecisionRecord, Store

_STOP = object()


class GroupCommitLog:
    """A DecisionLog that batches concurrent appends into one transaction."""

    def __init__(self, store: Store, *, max_batch: int = 256) -> None:
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

    def submit(self, record: DecisionRecord) -> Future[None]:
        if self._thread is None:
            raise StorageUnavailable("the decision log is not running")
        future: Future[None] = Future()
        self._queue.put((record, future))
        return future

    async def append(self, record: DecisionRecord) -> None:
        await asyncio.wrap_future(self.submit(record))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item is not _STOP]
            pending: list[tuple[DecisionRecord, Future[None]]] = batch  # type: ignore[assignment]
            if not pending:
                continue
            try:
                self._store.insert_decisions([record for record, _ in pending])
            except Exception as error:  # noqa: BLE001 - every waiter must hear of the failure
                failure = StorageUnavailable(f"the decision log could not be written: {error}")
                for _, future in pending:
                    future.set_exception(failure)
            else:
                for _, future in pending:
                    future.set_result(None)
