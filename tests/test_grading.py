"""The grader's pure parts: reading the judge's answer, the sample of decisions it grades,
the judge's prompt, and the [grader] section's checks."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from bandit_router.gateway.grading import DEFAULT_RUBRIC, judge_body, parse_grade, sampled
from bandit_router.settings import ConfigError, config_from_mapping

MODELS: list[dict[str, Any]] = [
    {"name": "small", "provider": "p", "input_price_per_mtok": 1.0,
     "output_price_per_mtok": 2.0, "context_window": 8000, "base_url": "http://127.0.0.1:9/v1"},
    {"name": "local", "provider": "p", "input_price_per_mtok": 0.0,
     "output_price_per_mtok": 0.0, "context_window": 8000},
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "quality"),
    [
        ("Score: 8", 7 / 9),
        ("score:10", 1.0),
        ("Score: 1", 0.0),
        ("Rating: 9/10 - clear and correct", 8 / 9),
        ("I'd give it 4/10.", 3 / 9),
        ('{"score": 6, "reason": "ok"}', 5 / 9),
        ("Score: **9**", 8 / 9),
        ("7", 6 / 9),
        ("0.85", 0.85),
        ("Score: 0.3", 0.3),
        ("Score: 7.5", 6.5 / 9),
    ],
)
def test_a_judge_s_grade_is_read_as_a_quality(text: str, quality: float) -> None:
    assert parse_grade(text) == pytest.approx(quality)


@pytest.mark.parametrize(
    "text", [None, "", "The answer is fine.", "Score: 11", "Score: 0", "0", "Score: -3", "N/A"]
)
def test_an_answer_with_no_usable_grade_is_none(text: str | None) -> None:
    assert parse_grade(text) is None


def test_the_sample_is_its_share_of_decisions_and_stable() -> None:
    draw = random.Random(20)
    ids = [str(uuid.UUID(int=draw.getrandbits(128))) for _ in range(4000)]
    for share in (0.1, 0.5, 0.9):
        taken = sum(sampled(i, share) for i in ids) / len(ids)
        assert taken == pytest.approx(share, abs=0.03)
    assert all(sampled(i, 1.0) for i in ids)
    assert not any(sampled(i, 0.0) for i in ids)
    assert [sampled(i, 0.5) for i in ids] == [sampled(i, 0.5) for i in ids]
    # A sample is nested in any larger one: raising the share only adds decisions.
    assert all(sampled(i, 0.6) for i in ids if sampled(i, 0.3))


def test_the_judge_s_prompt_keeps_the_texts_braces_and_cuts_long_texts() -> None:
    config = config_from_mapping({"models": MODELS, "grader": {"model": "small"}})
    assert config.grader is not None
    assert config.grader.rubric == DEFAULT_RUBRIC
    body = judge_body(config.grader, [{"role": "user", "content": "fill {answer} {x}"}], "42")
    content = body["messages"][0]["content"]
    assert "user: fill {answer} {x}" in content
    assert "<answer>\n42\n</answer>" in content
    assert body["model"] == "small"
    long = judge_body(config.grader, [], "a" * 50_000)["messages"][0]["content"]
    assert "a" * 20_000 in long
    assert "a" * 20_001 not in long


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"model": "nowhere"}, "grader.model: 'nowhere' is not a pool model"),
        ({"model": "local"}, "grader.model: 'local' has no base_url"),
        ({"model": "small", "timeout_s": 60, "lease_s": 30}, "must be longer than"),
        ({"model": "small", "rubric": "Grade {prompt}"}, "must contain {answer}"),
        ({"model": "small", "share": 1.5}, "grader.share"),
        ({"model": "small", "concurrency": 0}, "grader.concurrency"),
    ],
)
def test_a_grader_that_cannot_work_is_refused(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config_from_mapping({"models": MODELS, "grader": section})


def test_a_judge_of_its_own_and_the_grader_s_budget_are_accepted() -> None:
    config = config_from_mapping({
        "models": MODELS,
        "grader": {"model": "judge", "base_url": "http://judge:8000/v1/", "share": 0.25},
        "budgets": {"grader": {"usd": 5.0}},
    })  # fmt: skip
    assert config.grader is not None
    assert config.grader.upstream.base_url == "http://judge:8000/v1"
    assert config.grader.upstream.upstream_model == "judge"
    assert "grader" in config.budgets


def test_a_grader_budget_or_a_cascade_without_a_grader_is_refused() -> None:
    with pytest.raises(ConfigError, match="budgets"):
        config_from_mapping({"models": MODELS, "budgets": {"grader": {"usd": 5.0}}})
    with pytest.raises(ConfigError, match="cascade_accept"):
        config_from_mapping({"models": MODELS, "gateway": {"cascade_accept": 0.7}})
