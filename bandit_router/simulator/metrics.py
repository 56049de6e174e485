"""Cost–quality metrics of RouterBench (Hu et al. 2024, arXiv 2403.12031, section 3).

A router's points (cost, quality) across cost weights span a frontier. Its non-decreasing
convex hull is what the router can reach by mixing its operating points (randomising between
two λ reaches any point on the segment between them) and by never paying more for less.
AIQ is the area under that hull over a fixed cost range, divided by the range's width.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-decreasing upper convex hull of (cost, quality) points, cheapest first.

    Points are kept only while quality rises with cost; the upper hull of those is concave,
    so linear interpolation between its vertices never lies above a reachable mixture.
    """
    ordered = sorted(set(points))
    rising: list[tuple[float, float]] = []
    for point in ordered:
        if rising and point[1] <= rising[-1][1]:
            continue
        rising.append(point)
    hull: list[tuple[float, float]] = []
    for point in rising:
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], point) >= 0:
            hull.pop()
        hull.append(point)
    return hull


def quality_at(hull: Sequence[tuple[float, float]], cost: float) -> float:
    """The hull's quality at a cost: 0 below its cheapest point, flat beyond its dearest."""
    if not hull or cost < hull[0][0]:
        return 0.0
    for (c0, q0), (c1, q1) in pairwise(hull):
        if c0 <= cost <= c1:
            return q0 + (q1 - q0) * (cost - c0) / (c1 - c0)
    return hull[-1][1]


def aiq(points: Sequence[tuple[float, float]], cost_low: float, cost_high: float) -> float:
    """Average quality of the hull over [cost_low, cost_high].

    Between consecutive knots (the range's ends and the hull's vertices inside it) the hull is
    linear, so its value at each piece's midpoint times the piece's width is the exact area;
    the step from 0 to the first vertex's quality falls on a knot and needs no special case.
    """
    if cost_high <= cost_low:
        raise ValueError("the cost range must have a positive width")
    hull = frontier(points)
    knots = sorted({cost_low, cost_high, *(c for c, _ in hull if cost_low < c < cost_high)})
    area = sum(
        quality_at(hull, (left + right) / 2) * (right - left) for left, right in pairwise(knots)
    )
    return area / (cost_high - cost_low)


def cost_to_reach(hull: Sequence[tuple[float, float]], quality: float) -> float | None:
    """The least cost at which the hull reaches a quality, or None if it never does."""
    if not hull or hull[-1][1] < quality:
        return None
    if hull[0][1] >= quality:
        return hull[0][0]
    for (c0, q0), (c1, q1) in pairwise(hull):
        if q0 <= quality <= q1:
            return c0 + (c1 - c0) * (quality - q0) / (q1 - q0)
    return None


def apgr(
    points: Sequence[tuple[float, float]], weak_quality: float, strong_quality: float
) -> float:
    """RouteLLM's average performance gap recovered (Ong et al. 2024, arXiv 2406.18665).

    `points` are (share of calls to the strong model, quality). PGR = (q − q_weak) /
    (q_strong − q_weak); APGR is its mean over shares from 0 to 1 on the router's frontier,
    which always includes routing everything to the weak or to the strong model (0 and 1).
    """
    gap = strong_quality - weak_quality
    if gap <= 0:
        raise ValueError("the strong model must be better than the weak one")
    anchored = [*points, (0.0, weak_quality), (1.0, strong_quality)]
    pgr = [(share, (quality - weak_quality) / gap) for share, quality in anchored]
    return aiq(pgr, 0.0, 1.0)


def cpt(
    points: Sequence[tuple[float, float]],
    weak_quality: float,
    strong_quality: float,
    recovered: float,
) -> float | None:
    """RouteLLM's call-performance threshold: the least share of calls to the strong model
    at which the frontier recovers `recovered` (e.g. 0.5) of the performance gap."""
    anchored = [*points, (0.0, weak_quality), (1.0, strong_quality)]
    target = weak_quality + recovered * (strong_quality - weak_quality)
    return cost_to_reach(frontier(anchored), target)
