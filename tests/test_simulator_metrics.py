"""RouterBench's frontier metrics, checked on cases worked out by hand."""

from __future__ import annotations

import pytest

from bandit_router.simulator.metrics import aiq, apgr, cost_to_reach, cpt, frontier, quality_at


def test_frontier_drops_dominated_and_concave_breaking_points() -> None:
    points = [(1.0, 0.5), (2.0, 0.55), (3.0, 0.9), (4.0, 0.8), (2.0, 0.4)]
    # (2, 0.55) lies below the segment from (1, 0.5) to (3, 0.9); (4, 0.8) pays more for less.
    assert frontier(points) == [(1.0, 0.5), (3.0, 0.9)]


def test_quality_at_interpolates_and_is_flat_beyond_the_dearest_point() -> None:
    hull = [(1.0, 0.5), (3.0, 0.9)]
    assert quality_at(hull, 2.0) == pytest.approx(0.7)
    assert quality_at(hull, 10.0) == pytest.approx(0.9)
    assert quality_at(hull, 0.5) == 0.0


def test_aiq_of_a_single_model_spanning_the_range_is_its_quality() -> None:
    assert aiq([(1.0, 0.6)], 1.0, 5.0) == pytest.approx(0.6)


def test_aiq_is_the_trapezoid_area_over_the_width() -> None:
    # Hull (1, 0.5)–(3, 0.9), range [1, 5]: area 2·0.7 + 2·0.9 = 3.2, width 4.
    assert aiq([(1.0, 0.5), (3.0, 0.9)], 1.0, 5.0) == pytest.approx(0.8)


def test_aiq_counts_zero_below_the_cheapest_point() -> None:
    # Range [0, 4], single point (2, 0.8): nothing before cost 2, then 0.8 for 2 units.
    assert aiq([(2.0, 0.8)], 0.0, 4.0) == pytest.approx(0.4)


def test_cost_to_reach_a_quality() -> None:
    hull = [(1.0, 0.5), (3.0, 0.9)]
    assert cost_to_reach(hull, 0.7) == pytest.approx(2.0)
    assert cost_to_reach(hull, 0.4) == pytest.approx(1.0)
    assert cost_to_reach(hull, 0.95) is None


def test_apgr_of_random_routing_is_one_half() -> None:
    """Random routing lies on the diagonal between weak and strong: half the gap on average."""
    diagonal = [(share, 0.5 + 0.4 * share) for share in (0.25, 0.5, 0.75)]
    assert apgr(diagonal, 0.5, 0.9) == pytest.approx(0.5)
    assert cpt(diagonal, 0.5, 0.9, 0.5) == pytest.approx(0.5)
    assert cpt(diagonal, 0.5, 0.9, 0.8) == pytest.approx(0.8)


def test_apgr_and_cpt_of_a_router_that_recovers_the_gap_with_few_strong_calls() -> None:
    # At 20% of calls to the strong model it reaches the strong model's quality.
    points = [(0.2, 0.9)]
    # PGR rises linearly to 1 over [0, 0.2], then stays: area 0.1 + 0.8 = 0.9.
    assert apgr(points, 0.5, 0.9) == pytest.approx(0.9)
    assert cpt(points, 0.5, 0.9, 0.5) == pytest.approx(0.1)
