"""Cold start: the packaged pool and the RouterBench priors declare prior qualities, a model
added without one takes its price tier's, and LinUCB lets a declared prior weigh more."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bandit_router.catalog import tier_prior
from bandit_router.core import Context, ModelSpec, PolicySpec
from bandit_router.offline_cli import configured_priors
from bandit_router.policies import build
from bandit_router.settings import load_config
from bandit_router.simulator.outcomes import load_outcomes
from bandit_router.simulator.replay import priced_arms, table_features
from tests.test_api import _client

ROOT = Path(__file__).resolve().parent.parent
PACKAGED = ROOT / "bandit_router" / "default_models.toml"
ROUTERBENCH = ROOT / "data" / "routerbench"


def _sourced(path: Path) -> dict[str, str]:
    """Each model's prior_quality line with the comment lines just above it."""
    found: dict[str, str] = {}
    for block in path.read_text().split("[[models]]")[1:]:
        name = re.search(r'^name = "(.+)"$', block, re.MULTILINE)
        prior = re.search(r"((?:^#.*\n)+)prior_quality = ", block, re.MULTILINE)
        assert name is not None
        found[name.group(1)] = prior.group(1) if prior else ""
    return found


@pytest.mark.parametrize("path", [PACKAGED, ROUTERBENCH / "priors.toml"])
def test_every_model_declares_a_prior_with_its_benchmark_named(path: Path) -> None:
    config = load_config(path)
    assert all(m.prior_quality is not None and 0 < m.prior_quality < 1 for m in config.models)
    for model, comment in _sourced(path).items():
        assert "MMLU" in comment, f"{path}: {model}'s prior names no benchmark"


def test_the_routerbench_priors_cover_the_table_s_models_and_the_replay_uses_them() -> None:
    table = load_outcomes(ROUTERBENCH / "train.csv.gz")
    config = load_config(ROUTERBENCH / "priors.toml")
    priors = configured_priors(config)
    assert set(priors) == set(table.models)
    arms = priced_arms(table, priors)
    assert all(arm.prior_quality == priors[arm.name] for arm in arms)
    features, words = table_features(table)[0]
    cost_weight = config.cost_weight
    fresh = [
        build(PolicySpec.configured("linucb", params)).choose(
            Context(features, arms if given else priced_arms(table), cost_weight, "k", words)
        )
        for given, params in ((True, config.policy_params), (False, {}))
    ]
    # Without priors every expected quality is 0: the cheapest model looks best. With them,
    # the best prior net of its price does.
    greedy = [max(d.scores, key=lambda s: s.score).model for d in fresh]
    cheapest = min(priced_arms(table), key=lambda arm: arm.prior_cost_usd).name
    best_prior = max(arms, key=lambda a: (a.prior_quality or 0) - cost_weight * a.prior_cost_usd)
    assert greedy == [best_prior.name, cheapest]


def _spec(name: str, price: float, prior: float | None) -> ModelSpec:
    return ModelSpec(name, "p", price / 2, price / 2, 1000, prior_quality=prior)


def test_a_model_without_a_prior_takes_the_mean_of_its_price_tier_else_the_nearest() -> None:
    pool = [
        _spec("cheap-a", 0.2, 0.6),
        _spec("cheap-b", 0.5, 0.7),
        _spec("dear", 20.0, 0.9),
        _spec("free", 0.0, 0.5),
        _spec("unknown", 0.3, None),
    ]
    assert tier_prior(_spec("new", 0.3, None), pool) == pytest.approx(0.65)
    assert tier_prior(_spec("new", 15.0, None), pool) == pytest.approx(0.9)
    assert tier_prior(_spec("new", 300.0, None), pool) == pytest.approx(0.9)  # nearest tier
    assert tier_prior(_spec("new", 0.0, None), pool) == pytest.approx(0.5)
    assert tier_prior(_spec("new", 1.0, None), [_spec("x", 1.0, None)]) is None


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    with _client(migrated_url) as test_client:
        yield test_client


def test_post_models_without_a_prior_stores_its_price_tier_s(client: TestClient) -> None:
    answer = client.put("/models/cloud-mini", json={"prior_quality": 0.8})
    assert answer.status_code == 200, answer.text
    new = {"provider": "acme", "context_window": 32000, "output_price_per_mtok": 0.5}
    added = client.post("/models", json={**new, "name": "n1", "input_price_per_mtok": 0.2})
    assert added.status_code == 201, added.text
    assert added.json()["prior_quality"] == pytest.approx(0.8)
    declared = {**new, "name": "n2", "input_price_per_mtok": 0.2, "prior_quality": 0.3}
    assert client.post("/models", json=declared).json()["prior_quality"] == pytest.approx(0.3)


def test_linucb_s_prior_weight_narrows_the_bonus_of_a_model_with_a_declared_prior() -> None:
    table = load_outcomes(ROUTERBENCH / "train.csv.gz")
    features, words = table_features(table)[0]
    arms = priced_arms(table, {table.models[0]: 0.7})
    context = Context(features, arms, 20.0, "k", words)
    for params, narrower in (({}, False), ({"prior_weight": 100.0}, True)):
        scores = build(PolicySpec("linucb", params)).choose(context).scores
        declared, other = scores[0].exploration_bonus, scores[1].exploration_bonus
        assert (declared < other) is narrower
    with pytest.raises(ValueError, match="prior_weight must be > 0"):
        build(PolicySpec("linucb", {"prior_weight": 0.0}))
