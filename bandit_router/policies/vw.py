"""Vowpal Wabbit's contextual bandit with action-dependent features (``--cb_explore_adf``).

One multi-line example per request: a shared line with the context features (namespace ``c``)
and the prompt's word tokens (``w``), then one line per eligible model with its name, price
tier and tags (``a``). Quadratic interactions ``c×a`` and ``w×a`` let every model have its own
weight for every feature and word, while first-order ``a`` features let a model the policy has
never tried borrow what models of its tier and tags have shown.

VW minimises a cost, so it learns cost = −reward with reward = quality − λ·cost_usd. Unlike
LinUCB, which keeps quality and cost apart, **λ is fixed per VW policy**: with the
``cost_weight`` parameter set, every outcome is learned at that λ; without it, each outcome at
the λ its decision carried (in the service that is the configured default unless a caller
overrides it; in the replay it is the run's λ). A request's ``cost_weight`` changes what VW
learns, never how an already learned model ranks.

The probability returned is VW's pmf entry for the chosen model; the draw from that pmf is
seeded by the decision id (``Context.draw_key``), so a logged decision can be reproduced. The
scores report VW's regression estimate per model: ``score`` is the predicted reward,
``expected_cost_usd`` the priced cost (VW has no separate cost model) and ``expected_quality``
the quality that estimate implies at that cost.

vowpalwabbit is an optional dependency (the ``vw`` extra), imported only when a VW policy is
built or restored.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import struct
import tempfile
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from bandit_router.core import Context, Decision, Outcome
from bandit_router.features import configured_features, features_read
from bandit_router.policies.common import check_epsilon, draw_decision

if TYPE_CHECKING:
    from vowpalwabbit.pyvw import Workspace

EXPLORATIONS = ("squarecb", "epsilon", "cover", "bag")

# VW's text format splits on whitespace and reads ':' and '|' as syntax.
_UNSAFE = re.compile(r"[\s:|]+")
_HEADER = struct.Struct(">I")


@functools.lru_cache(maxsize=4096)
def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text) or "_"


@functools.lru_cache(maxsize=4096)
def _tier(prior_cost_usd: float) -> str:
    """The decade of the request's priced cost: a coarse price class that new models share.
    (Cached: requests of similar length price each model alike, and this is most of what an
    arm's line costs to build.)"""
    if prior_cost_usd <= 0.0:
        return "free"
    return str(max(-9, min(2, math.floor(math.log10(prior_cost_usd)))))


@functools.lru_cache(maxsize=4096)
def _action_line(name: str, tier: str, tags: frozenset[str]) -> str:
    """An arm's line without its label; the same few lines recur on every request."""
    tag_features = "".join(f" tag={_safe(tag)}" for tag in sorted(tags))
    return f"|a m={_safe(name)} tier={tier}{tag_features}"


def _engine() -> ModuleType:
    """VW's native module: parsing, predicting and finishing examples through it directly
    skips the Python wrapper pyvw builds around every line (about 60 µs of a choice)."""
    try:
        import pylibvw
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise ValueError(
            "the vw policy needs Vowpal Wabbit: pip install 'bandit_router[vw]'"
        ) from error
    engine: ModuleType = pylibvw
    return engine


def _workspace(arguments: list[str], model_path: str | None = None) -> Workspace:
    _engine()
    from vowpalwabbit.pyvw import Workspace

    if model_path is not None:
        # The model file carries its random state; a seed given again would contradict it.
        at = arguments.index("--random_seed")
        arguments = [*arguments[:at], *arguments[at + 2 :], "--initial_regressor", model_path]
    return Workspace(arg_list=arguments)


class VowpalWabbit:
    """VW ``--cb_explore_adf`` behind the policy protocol; see the module docstring."""

    name = "vw"

    def __init__(
        self,
        *,
        exploration: str = "squarecb",
        cost_weight: float | None = None,
        epsilon: float = 0.05,
        gamma_scale: float = 10.0,
        ensemble: int = 4,
        learning_rate: float = 0.5,
        cb_type: str = "mtr",
        words: int = 0,
        bits: int = 18,
        features: Sequence[str] | None = None,
        seed: int = 0,
        _model_path: str | None = None,
    ) -> None:
        if exploration not in EXPLORATIONS:
            raise ValueError(
                f"exploration must be one of {', '.join(EXPLORATIONS)}, got {exploration!r}"
            )
        check_epsilon(epsilon)
        if cost_weight is not None and cost_weight < 0.0:
            raise ValueError(f"cost_weight must be ≥ 0, got {cost_weight}")
        if gamma_scale <= 0.0 or learning_rate <= 0.0 or ensemble < 1:
            raise ValueError("gamma_scale and learning_rate must be > 0 and ensemble ≥ 1")
        if words < 0:
            raise ValueError(f"words must be ≥ 0, got {words}")
        if not 10 <= bits <= 28:
            raise ValueError(f"bits must be in [10, 28], got {bits}")
        self.exploration = exploration
        self.cost_weight = cost_weight
        self.epsilon = epsilon
        self.gamma_scale = gamma_scale
        self.ensemble = ensemble
        self.learning_rate = learning_rate
        self.cb_type = cb_type
        self.words = words
        self.bits = bits
        self._read = features_read(features)
        self.seed = seed
        self._version = 0
        self._engine = _engine()
        self._vw = _workspace(self._arguments(), _model_path)

    def _arguments(self) -> list[str]:
        explore = {
            "squarecb": ["--squarecb", "--gamma_scale", str(self.gamma_scale)],
            "epsilon": ["--epsilon", str(self.epsilon)],
            "cover": ["--cover", str(self.ensemble), "--epsilon", str(self.epsilon)],
            "bag": ["--bag", str(self.ensemble), "--epsilon", str(self.epsilon)],
        }[self.exploration]
        return [
            "--cb_explore_adf",
            *explore,
            "--interactions",
            "ca",
            "--interactions",
            "wa",
            "--cb_type",
            self.cb_type,
            "--learning_rate",
            str(self.learning_rate),
            "--bit_precision",
            str(self.bits),
            "--random_seed",
            str(self.seed),
            "--quiet",
        ]

    @property
    def version(self) -> int:
        return self._version

    @property
    def reads_words(self) -> bool:
        return self.words > 0

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "exploration": self.exploration,
            "epsilon": self.epsilon,
            "gamma_scale": self.gamma_scale,
            "ensemble": self.ensemble,
            "learning_rate": self.learning_rate,
            "cb_type": self.cb_type,
            "words": self.words,
            "bits": self.bits,
            "seed": self.seed,
        }
        if self.cost_weight is not None:
            params["cost_weight"] = self.cost_weight
        if self._read is not None:
            params["features"] = configured_features(self._read)
        return params

    def _shared_line(self, context: Context) -> str:
        parts = ["shared |c"]
        read = self._read
        for key, value in context.features.items():
            # tokens is left out (log_tokens carries the length on a sane scale), and so is
            # every feature the policy was not given to read
            if key == "tokens" or (read is not None and key not in read):
                continue
            if isinstance(value, str):
                parts.append(f"{_safe(key)}={_safe(value)}")
            elif -10.0 <= value <= 10.0:  # most values: no clamp needed (and NaN fails here)
                if value != 0.0:
                    parts.append(f"{_safe(key)}:{value:.6g}")
            elif math.isfinite(value):
                parts.append(f"{_safe(key)}:{min(max(value, -10.0), 10.0):.6g}")
        if context.words and self.words:
            parts.append("|w")
            parts.extend(context.words[: self.words])
        return " ".join(parts)

    def _example(self, context: Context, labels: dict[int, str] | None = None) -> str:
        lines = [self._shared_line(context)]
        for index, arm in enumerate(context.arms):
            line = _action_line(arm.name, _tier(arm.prior_cost_usd), arm.tags)
            label = labels.get(index) if labels else None
            lines.append(line if label is None else label + line)
        return "\n".join(lines)

    def choose(self, context: Context) -> Decision:
        if not context.arms:
            raise ValueError("choose needs at least one eligible arm")
        engine, vw = self._engine, self._vw
        examples = vw._parse(self._example(context))
        try:
            engine.vw.predict_multi(vw, examples)
            pmf: list[float] = examples[0].get_action_scores()
            # The base regressor's cost estimate per action, read before the examples are freed.
            predicted_costs: list[float] = [e.get_partial_prediction() for e in examples[1:]]
        finally:
            engine.vw._finish_example_multi_ex(vw, examples)
        cost_weight = context.cost_weight if self.cost_weight is None else self.cost_weight
        rewards = [-cost for cost in predicted_costs]
        priced = [arm.prior_cost_usd for arm in context.arms]
        # Normalised so a pmf that sums to 1 ± rounding is an exact distribution to draw from.
        total = sum(pmf)
        probabilities = [p / total for p in pmf]
        return draw_decision(
            context,
            probabilities,
            self.seed,
            qualities=[r + cost_weight * c for r, c in zip(rewards, priced, strict=True)],
            costs=priced,
            bonuses=[0.0] * len(context.arms),
            scores=rewards,
        )

    def learn(
        self,
        context: Context,
        model: str,
        outcome: Outcome,
        *,
        probability: float,
        replaces: Outcome | None = None,
    ) -> None:
        """VW learns online and cannot take an example back: a replaced outcome stays, and
        the new one is learned on top (its regressor moves toward the chain's return)."""
        chosen = next((i for i, arm in enumerate(context.arms) if arm.name == model), None)
        if chosen is None:
            raise ValueError(f"{model!r} was not among the eligible arms of the context")
        if not 0.0 < probability <= 1.0:
            raise ValueError(f"probability must be in (0, 1], got {probability}")
        cost_weight = context.cost_weight if self.cost_weight is None else self.cost_weight
        cost = -outcome.reward(cost_weight)
        label = f"0:{cost:.9g}:{probability:.9g} "
        engine, vw = self._engine, self._vw
        examples = vw._parse(self._example(context, {chosen: label}))
        try:
            engine.vw.learn_multi(vw, examples)
        finally:
            engine.vw._finish_example_multi_ex(vw, examples)
        self._version += 1

    def dumps(self) -> bytes:
        """A length-prefixed JSON header (parameters, version), then VW's own model file."""
        meta = json.dumps({"params": self._params(), "version": self._version}).encode()
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "policy.vw")
            self._vw.save(path)
            with open(path, "rb") as file:
                model = file.read()
            if self.exploration in ("cover", "bag"):
                # Their ensembles draw from a random state the model file does not hold, so a
                # restored copy would drift from this one; continuing from the saved model
                # keeps the live policy and every copy of the snapshot learning alike.
                self._vw.finish()
                self._vw = _workspace(self._arguments(), path)
        return _HEADER.pack(len(meta)) + meta + model

    @classmethod
    def loads(cls, data: bytes) -> VowpalWabbit:
        (length,) = _HEADER.unpack_from(data)
        meta = json.loads(data[_HEADER.size : _HEADER.size + length])
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "policy.vw")
            with open(path, "wb") as file:
                file.write(data[_HEADER.size + length :])
            policy = cls(**meta["params"], _model_path=path)
        policy._version = int(meta["version"])
        return policy
