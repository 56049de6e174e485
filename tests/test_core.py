"""Small values of core: time-ordered decision ids, stable hashing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from bandit_router.core import stable_uniform, time_ordered_uuid


def test_decision_ids_are_version_7_uuids_that_grow_with_time() -> None:
    ids = []
    for _ in range(5):
        ids.append(time_ordered_uuid())
        time.sleep(0.002)
    parsed = [uuid.UUID(value) for value in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert ids == sorted(ids)
    millis = parsed[-1].int >> 80
    assert abs(millis - time.time_ns() // 1_000_000) < 5_000


def test_decision_ids_do_not_repeat_within_a_millisecond() -> None:
    ids = {time_ordered_uuid() for _ in range(20_000)}
    assert len(ids) == 20_000


def test_a_forked_process_draws_other_ids_than_its_parent() -> None:
    time_ordered_uuid()  # the parent's pool now holds random bytes a child could inherit
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe and exits
        os.write(write, time_ordered_uuid().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    theirs = os.read(read, 64).decode()
    os.close(read)
    ours = time_ordered_uuid()
    # The last 62 bits are random (RFC 9562's rand_b): equal ones would mean shared bytes.
    assert uuid.UUID(theirs).int & (1 << 62) - 1 != uuid.UUID(ours).int & (1 << 62) - 1


def test_stable_uniform_is_the_same_in_another_process() -> None:
    here = stable_uniform("7", "decision-1")
    program = (
        "from bandit_router.core import stable_uniform\n"
        "print(repr(stable_uniform('7', 'decision-1')))"
    )
    there = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert float(there) == here
    assert 0.0 <= here < 1.0
