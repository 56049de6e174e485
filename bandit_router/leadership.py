"""The ``bandit-router learner`` loop: one learner of a database learns, the others stand by.

The learner that holds the database's lease (storage.base.LearnerLease) learns and publishes;
any other stands by, says so in its log, and tries the lease every ``standby_s``. When the
leader dies its lease ends with its database session, and a standby takes it over: it
restores the newest snapshot and learns the logs after that snapshot's cursor, so the hand-over
loses no outcome and learns none twice (learner.py). A leader checks its lease before every
step and every publication: one that lost it (its session cut) stops learning and stands by.
"""

from __future__ import annotations

import logging
import threading
import time

from bandit_router.learner import Learner
from bandit_router.storage.base import LearnerLease

log = logging.getLogger(__name__)


def run_learner(
    learner: Learner,
    stop: threading.Event,
    lease: LearnerLease,
    *,
    poll_s: float = 0.1,
    publish_s: float = 0.5,
    standby_s: float = 0.5,
) -> None:
    """Leads while it holds the lease, stands by while another process does, until ``stop``."""
    standing_by = False
    try:
        while not stop.is_set():
            if not lease.acquire():
                if not standing_by:
                    log.info(
                        "learner standing by: %s holds the learner lease; this process takes "
                        "over when it ends",
                        lease.holder() or "another learner",
                    )
                    standing_by = True
                stop.wait(standby_s)
                continue
            if standing_by:
                log.info("learner lease taken: this process leads now")
            standing_by = False
            _lead(learner, stop, lease, poll_s=poll_s, publish_s=publish_s)
    finally:
        lease.release()


def _lead(
    learner: Learner,
    stop: threading.Event,
    lease: LearnerLease,
    *,
    poll_s: float,
    publish_s: float,
) -> None:
    """Learn what arrived, publish a snapshot at most every ``publish_s`` when anything was
    learned (so serving replicas see it within about a second), while the lease holds."""
    try:
        before = learner.learned
        learner.restore()
    except Exception:
        log.exception("restoring the policies failed; retrying")
        stop.wait(poll_s)
        return
    log.info(
        "learner running: %d outcomes learned from the logs at start", learner.learned - before
    )
    published = before  # what restore() learned counts as unpublished too, published at once
    last_publish = time.monotonic() - publish_s
    while not stop.is_set():
        if not lease.held():
            log.error("learner lease lost: this process stops learning and stands by")
            return
        try:
            applied = learner.catch_up()
        except Exception:
            log.exception("learning from the logs failed; retrying")
            applied = 0
        pending = learner.learned - published
        if pending and time.monotonic() - last_publish >= publish_s and lease.held():
            learner.snapshot()
            log.info("learned %d outcomes; published a snapshot", pending)
            published += pending
            last_publish = time.monotonic()
        if not applied:
            stop.wait(poll_s)
    if lease.held():
        learner.snapshot()
