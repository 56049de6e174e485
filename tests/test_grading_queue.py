"""The grader's durable queue on SQLite and PostgreSQL: one job per decision (also within a
batch), claims for a lease that concurrent claimers never share, expired claims retaken, and a
stale claim unable to finish or release a job another worker took over."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from bandit_router.storage.base import NewGradingJob
from bandit_router.storage.sql import SqlStore

PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]


def new_job(decision_id: str, answer: str = "4") -> NewGradingJob:
    return NewGradingJob(decision_id, PROMPT, answer)


@pytest.fixture
def store(migrated_url: str) -> Iterator[SqlStore]:
    opened = SqlStore(migrated_url)
    yield opened
    opened.close()


def test_a_decision_is_queued_once(store: SqlStore) -> None:
    assert store.enqueue_gradings([new_job("d1")]) == 1
    # A batch keeps its other jobs when one of them names a decision already queued.
    again = [new_job("d1", "four"), new_job("d2"), new_job("d2", "four")]
    assert store.enqueue_gradings(again) == 1
    claimed = store.claim_grading(10, lease_s=60)
    assert [(c.decision_id, c.prompt, c.answer, c.tries) for c in claimed] == [
        ("d1", PROMPT, "4", 1),
        ("d2", PROMPT, "4", 1),
    ]
    assert store.grading_backlog() == 2


def test_a_claimed_job_is_not_claimed_again_until_its_lease_ends(store: SqlStore) -> None:
    store.enqueue_gradings([new_job(f"d{index}") for index in range(5)])
    first = store.claim_grading(3, lease_s=60)
    assert [job.decision_id for job in first] == ["d0", "d1", "d2"]  # oldest first
    second = store.claim_grading(10, lease_s=0.2)
    assert [job.decision_id for job in second] == ["d3", "d4"]
    assert store.claim_grading(10, lease_s=60) == []
    time.sleep(0.3)  # the second claim's lease ended, as a killed worker's does
    retaken = store.claim_grading(10, lease_s=60)
    assert [(job.decision_id, job.tries) for job in retaken] == [("d3", 2), ("d4", 2)]
    # The stale claim can neither delete nor release what the new claim holds.
    store.finish_grading(second[0])
    store.release_grading(second[1], 0.0, count_try=True)
    assert store.grading_backlog() == 5
    assert store.claim_grading(10, lease_s=60) == []
    for job in [*first, *retaken]:
        store.finish_grading(job)
    assert store.grading_backlog() == 0


def test_a_released_job_comes_back_after_its_delay_with_its_tries(store: SqlStore) -> None:
    store.enqueue_gradings([new_job("d1")])
    [claimed] = store.claim_grading(1, lease_s=60)
    store.release_grading(claimed, 0.2, count_try=True)
    assert store.claim_grading(1, lease_s=60) == []
    time.sleep(0.3)
    [again] = store.claim_grading(1, lease_s=60)
    assert again.tries == 2
    store.release_grading(again, 0.0, count_try=False)  # not tried: the try is refunded
    [third] = store.claim_grading(1, lease_s=60)
    assert third.tries == 2


def test_concurrent_claimers_take_disjoint_jobs(store: SqlStore) -> None:
    store.enqueue_gradings([new_job(f"d{index:03}") for index in range(200)])
    taken: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def claimer(mine: list[str]) -> None:
        start.wait()
        while jobs := store.claim_grading(7, lease_s=60):
            mine.extend(claimed.decision_id for claimed in jobs)

    threads = [threading.Thread(target=claimer, args=(mine,)) for mine in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [decision for mine in taken for decision in mine]
    assert sorted(every) == [f"d{index:03}" for index in range(200)]  # each exactly once
