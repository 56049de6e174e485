"""Cascade replay: a client that grades every answer and escalates a doubtful one.

The client calls the model the policy chooses, grades the answer, and while the grade says
wrong (below 0.5) and attempts remain, asks for the next model among those not yet tried
(docs/escalation.md). The final answer is the last attempt's: the chain's quality is that
attempt's true quality, its cost the sum of every attempt's.

The grader is simulated: it reports an answer's true quality, flipped (q → 1 − q) with
probability ``grader_error``. The policy sees only grades, as a real client's router would: an
escalation's context carries the earlier attempts' grades (``escalation_features``), and every
attempt learns its grade, exactly as the service learns a chain: its own graded outcome as soon
as it is graded, then each earlier attempt's outcome replaced by its new return
(``escalation.corrections``). The report scores true qualities.

The full-information references (``best-fixed-cascade``, ``per-task-best-cascade``) fix an
ordered chain of models, chosen knowing every training outcome. They are valued by their
expectation over the grader's noise, in closed form (an attempt is graded wrong with probability
1 − E when its answer is wrong, E when it is right), not by simulated draws: the reference
then carries no noise of its own, and the chain it picks is the best in expectation exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bandit_router import policies
from bandit_router.core import Arm, Context, Outcome, Policy, PolicySpec
from bandit_router.escalation import (
    DEFAULT_MAX_ATTEMPTS,
    Attempt,
    corrections,
    escalation_features,
)
from bandit_router.simulator.outcomes import OutcomeTable
from bandit_router.simulator.replay import (
    OnlineTally,
    Prompt,
    Run,
    frozen_model,
    priced_arms,
)

ESCALATE_SUFFIX = "+escalate"
WRONG_BELOW = 0.5
"""A grade below this says the answer is wrong: the client escalates."""
MAX_REFERENCE_CHAINS = 100_000
"""The references try every ordered chain; beyond this many (11 models and 6 attempts make
332,640) they are left out rather than let one report take minutes."""


def check_grader_error(error: float) -> float:
    """A grader that errs half the time or more says nothing (or the opposite) about the answer."""
    if not 0.0 <= error < 0.5:
        raise ValueError(f"the grader error must be in [0, 0.5), got {error:g}")
    return error


class SimulatedGrader:
    """Reports an answer's true quality, flipped (q → 1 − q) with probability ``error``.

    Every (prompt, model) answer's flip is drawn up front from the seeded generator, so a run
    is reproducible, and the runs of one seed (every policy, every λ) face the same grader
    mistakes on the same answers: their differences are the policies', not the grader's. Each
    prompt is met once per run, so this is the same as drawing a flip per attempt.
    """

    def __init__(self, error: float, prompts: int, models: int, rng: np.random.Generator) -> None:
        self.error = check_grader_error(error)
        self._flipped = rng.random((prompts, models)) < error

    def grade(self, prompt: int, column: int, quality: float) -> float:
        return 1.0 - quality if self._flipped[prompt, column] else quality


@dataclass(frozen=True)
class Chain:
    """One prompt's attempts in order, their grades, and what the chain achieved."""

    prompt: int
    """The prompt's row in its table."""
    models: tuple[str, ...]
    grades: tuple[float, ...]
    quality: float
    """The last attempt's true quality."""
    cost_usd: float
    """Every attempt's cost."""


@dataclass(frozen=True)
class CascadeRun(Run):
    """One policy, one λ, one seed, replayed as cascades. ``shares`` count every attempt."""

    attempts: float
    """Mean attempts per prompt: on the test table when there is one, else online."""
    online_chains: tuple[Chain, ...]
    """Every training prompt's chain, in replay order."""
    test_chains: tuple[Chain, ...] | None


@dataclass(frozen=True)
class _Client:
    """The simulated client of a run: the table its answers come from, its grader, its λ
    and how many attempts it makes at most."""

    table: OutcomeTable
    column: Mapping[str, int]
    arms: tuple[Arm, ...]
    grader: SimulatedGrader
    cost_weight: float
    max_attempts: int


def _run_chain(
    policy: Policy,
    client: _Client,
    row: int,
    prompt: Prompt,
    draw_key: str,
    *,
    learning: bool,
    learns: bool = True,
) -> Chain:
    """Calls, grades and escalates one prompt. ``learning``: the policy's own draws, each attempt
    learned as the service learns it; else the frozen policy's choices (``frozen_model``; a
    policy that ``learns`` exploits), nothing learned."""
    features, words = prompt
    previous: list[Attempt] = []
    graded: list[Outcome] = []
    # Each attempt learned so far, to correct when the chain grows: its context, model and
    # the probability it was chosen with.
    learned: list[tuple[Context, str, float]] = []
    remaining = client.arms
    cost_weight = client.cost_weight
    quality = cost = 0.0
    while True:
        attempt = len(previous) + 1
        # A first attempt sees the prompt's features as a single-shot request does, and
        # draws with the same key, so its choice is the single-shot choice of the same state.
        if attempt == 1:
            context = Context(features, remaining, cost_weight, draw_key, words)
        else:
            escalation = escalation_features(features, previous)
            context = Context(escalation, remaining, cost_weight, f"{draw_key}/{attempt}", words)
        decision = policy.choose(context)
        model = decision.model if learning else frozen_model(decision, cost_weight, learns=learns)
        j = client.column[model]
        quality = float(client.table.quality[row, j])
        attempt_cost = float(client.table.cost[row, j])
        cost += attempt_cost
        grade = client.grader.grade(row, j, quality)
        if learning:
            graded.append(Outcome(grade, attempt_cost))
            policy.learn(context, model, graded[-1], probability=decision.probability)
            for (earlier, earlier_model, earlier_probability), (old, new) in zip(
                learned, corrections(graded), strict=True
            ):
                policy.learn(
                    earlier, earlier_model, new, probability=earlier_probability, replaces=old
                )
            learned.append((context, model, decision.probability))
        previous.append(Attempt(f"{draw_key}/{attempt}", model, grade, attempt_cost))
        remaining = tuple(arm for arm in remaining if arm.name != model)
        if grade >= WRONG_BELOW or attempt >= client.max_attempts or not remaining:
            break
    return Chain(
        row, tuple(a.model for a in previous), tuple(a.quality for a in previous), quality, cost
    )


def _grader(error: float, table: OutcomeTable, stream: np.random.SeedSequence) -> SimulatedGrader:
    return SimulatedGrader(error, len(table), len(table.models), np.random.default_rng(stream))


def _mean(values: Iterable[float]) -> float:
    collected = list(values)
    return sum(collected) / len(collected)


def replay_cascade(
    spec: PolicySpec,
    train: OutcomeTable,
    train_prompts: list[Prompt],
    *,
    cost_weight: float,
    seed: int,
    grader_error: float,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    test: OutcomeTable | None = None,
    test_prompts: list[Prompt] | None = None,
) -> CascadeRun:
    """``replay`` with every prompt answered by a cascade: the train prompts in the same seeded
    order, each attempt chosen and learned; then, when a test table is given, the frozen policy
    chooses greedily at every attempt there, the same grader driving escalation, learning
    nothing."""
    if max_attempts < 2:
        raise ValueError(f"a cascade needs at least 2 attempts, got {max_attempts}")
    params = {**spec.params, "seed": seed}
    if spec.name in policies.PLANNING_POLICIES:
        # The client escalates every wrong grade while attempts remain: a policy that plans
        # chains is told how long they can be, unless its parameters say otherwise.
        params.setdefault("plan_attempts", max_attempts)
    policy = policies.build(PolicySpec(spec.name, params))
    arms = priced_arms(train)
    column = {model: j for j, model in enumerate(train.models)}
    train_stream, test_stream = np.random.SeedSequence(seed).spawn(2)
    # The test table's grader draws from its own stream: scoring never shifts training draws.
    train_client = _Client(
        train, column, arms, _grader(grader_error, train, train_stream), cost_weight, max_attempts
    )
    order = np.random.default_rng(seed).permutation(len(train))
    online = OnlineTally(train, len(order), cost_weight)
    calls = np.zeros(len(train.models))
    online_chains: list[Chain] = []
    for step, prompt in enumerate(order):
        chain = _run_chain(
            policy,
            train_client,
            int(prompt),
            train_prompts[prompt],
            f"{seed}/{step}",
            learning=True,
        )
        online_chains.append(chain)
        for model in chain.models:
            calls[column[model]] += 1
        online.add(int(prompt), chain.quality, chain.cost_usd)
    scored = online_chains
    test_chains: list[Chain] | None = None
    if test is not None and test_prompts is not None:
        test_client = _Client(
            test,
            {model: j for j, model in enumerate(test.models)},
            arms,
            _grader(grader_error, test, test_stream),
            cost_weight,
            max_attempts,
        )
        test_chains = [
            _run_chain(
                policy,
                test_client,
                row,
                prompt,
                f"test/{row}",
                learning=False,
                learns=spec.name in policies.LEARNING_POLICIES,
            )
            for row, prompt in enumerate(test_prompts)
        ]
        scored = test_chains
        calls = np.zeros(len(train.models))
        for chain in test_chains:
            for model in chain.models:
                calls[column[model]] += 1
    return CascadeRun(
        online_quality=online.quality,
        online_cost=online.cost,
        online_reward=online.rewards,
        regret=online.regret,
        test_quality=None if test_chains is None else _mean(c.quality for c in test_chains),
        test_cost=None if test_chains is None else _mean(c.cost_usd for c in test_chains),
        shares={model: float(calls[j] / calls.sum()) for j, model in enumerate(train.models)},
        attempts=_mean(len(c.models) for c in scored),
        online_chains=tuple(online_chains),
        test_chains=None if test_chains is None else tuple(test_chains),
    )


@dataclass(frozen=True)
class FixedChains:
    """Every ordered chain of distinct models of one length, with each chain's expected
    quality and cost under the grader's noise, summed over the prompts of each group."""

    chains: tuple[tuple[int, ...], ...]
    """Model columns in calling order."""
    groups: tuple[str, ...]
    quality: npt.NDArray[np.float64]
    """Groups × chains: the chain's expected final quality, summed over the group's prompts."""
    cost: npt.NDArray[np.float64]
    """Groups × chains: its expected total cost, summed likewise."""


def escalation_probability(
    quality: npt.NDArray[np.float64], grader_error: float
) -> npt.NDArray[np.float64]:
    """The chance that the grade of an answer of this true quality says wrong: the true quality
    does with probability 1 − E, its flip 1 − q with probability E."""
    wrong: npt.NDArray[np.float64] = (1.0 - grader_error) * (quality < WRONG_BELOW) + (
        grader_error * (1.0 - quality < WRONG_BELOW)
    )
    return wrong


def fixed_chains(
    table: OutcomeTable, length: int, grader_error: float, groups: Sequence[str]
) -> FixedChains:
    """Expected quality and cost of every ordered chain of ``length`` models on the table.

    Per prompt, a chain reaches its next model with the probability that every grade so far
    said wrong; an attempt it ends on contributes its quality, and every attempt it reaches
    its cost. Chains sharing a prefix share its arithmetic (a depth-first walk).
    """
    names = tuple(sorted(set(groups)))
    group_of = np.array([names.index(g) for g in groups])
    membership = np.zeros((len(names), len(table)))
    membership[group_of, np.arange(len(table))] = 1.0
    escalation = escalation_probability(table.quality, grader_error)
    chains: list[tuple[int, ...]] = []
    quality_sums: list[npt.NDArray[np.float64]] = []
    cost_sums: list[npt.NDArray[np.float64]] = []

    def extend(
        prefix: tuple[int, ...],
        reach: npt.NDArray[np.float64],
        quality: npt.NDArray[np.float64],
        cost: npt.NDArray[np.float64],
    ) -> None:
        for j in range(len(table.models)):
            if j in prefix:
                continue
            spent = cost + reach * table.cost[:, j]
            if len(prefix) + 1 == length:
                chains.append((*prefix, j))
                quality_sums.append(membership @ (quality + reach * table.quality[:, j]))
                cost_sums.append(membership @ spent)
            else:
                kept = reach * (1.0 - escalation[:, j])
                extend(
                    (*prefix, j),
                    reach * escalation[:, j],
                    quality + kept * table.quality[:, j],
                    spent,
                )

    start = np.ones(len(table))
    extend((), start, np.zeros(len(table)), np.zeros(len(table)))
    return FixedChains(
        tuple(chains),
        names,
        np.array(quality_sums).T,
        np.array(cost_sums).T,
    )


def cascade_references(
    train: OutcomeTable,
    evaluate: OutcomeTable,
    *,
    cost_weights: Sequence[float],
    grader_error: float,
    max_attempts: int,
) -> dict[str, list[tuple[float, float]]]:
    """For each λ, (quality, cost) on ``evaluate`` of the best fixed chain on the train table
    (``best-fixed-cascade``) and of the best chain per task (``per-task-best-cascade``; the
    overall best for a task the train table lacks). Chains are as long as the client allows
    (fewer models, fewer attempts), since it escalates every wrong grade while it can.
    Empty when there are more than ``MAX_REFERENCE_CHAINS`` chains to try."""
    length = min(max_attempts, len(train.models))
    if math.perm(len(train.models), length) > MAX_REFERENCE_CHAINS:
        return {}
    learned = fixed_chains(train, length, grader_error, train.tasks)
    scored = fixed_chains(evaluate, length, grader_error, evaluate.tasks)
    train_quality, train_cost = learned.quality.sum(axis=0), learned.cost.sum(axis=0)
    references: dict[str, list[tuple[float, float]]] = {
        "best-fixed-cascade": [],
        "per-task-best-cascade": [],
    }
    for cost_weight in cost_weights:
        overall = int(np.argmax(train_quality - cost_weight * train_cost))
        references["best-fixed-cascade"].append(
            (
                float(scored.quality[:, overall].sum() / len(evaluate)),
                float(scored.cost[:, overall].sum() / len(evaluate)),
            )
        )
        quality = cost = 0.0
        for h, task in enumerate(scored.groups):
            best = overall
            if task in learned.groups:
                g = learned.groups.index(task)
                best = int(np.argmax(learned.quality[g] - cost_weight * learned.cost[g]))
            quality += float(scored.quality[h, best])
            cost += float(scored.cost[h, best])
        references["per-task-best-cascade"].append((quality / len(evaluate), cost / len(evaluate)))
    return references
