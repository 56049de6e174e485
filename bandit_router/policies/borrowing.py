"""What LinUCB expects of a model with no outcomes yet: its declared prior, else its peers'."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from bandit_router.core import Arm


def _tier(cost_usd: float) -> int:
    return math.floor(math.log10(cost_usd)) if cost_usd > 0 else -99


def borrowed_quality(
    arm: Arm,
    arms: Sequence[Arm],
    rows: Mapping[str, int],
    known_quality: Sequence[float],
) -> float:
    """What a model with no outcomes yet is expected to achieve: its declared prior, else
    what the known models of its price tier (decade of the priced cost) or with one of its
    tags are expected to achieve here, else 0."""
    if arm.prior_quality is not None:
        return arm.prior_quality
    if not rows:  # nothing learned yet: no peer to borrow from
        return 0.0
    peers = [
        (other.prior_quality or 0.0) + known_quality[rows[other.name]]
        for other in arms
        if other.name in rows
        and (_tier(other.prior_cost_usd) == _tier(arm.prior_cost_usd) or other.tags & arm.tags)
    ]
    return sum(peers) / len(peers) if peers else 0.0
