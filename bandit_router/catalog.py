"""What the admin endpoints change and every process routes with: the model pool, the
eligibility rules and the experiments, as the store holds them, and how many scored outcomes
each model has (for the new-model quota).

A change made through one process is stored first, so every other process takes it up on its
next `reload` (main.py calls it every second). Each reload replaces whole values, never edits
them in place, so a request that read the pool or the rules sees one consistent version.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

from bandit_router.core import Conflict, Context, Decision, InvalidInput, ModelSpec, NotFound
from bandit_router.eligibility import NO_RULES, Rules
from bandit_router.experiment_report import build_experiment_report
from bandit_router.experiments import Experiment
from bandit_router.storage.base import CatalogSource


@dataclass(frozen=True)
class Pool:
    """One version of the model pool: the models in order, by name, and those with rate
    limits. A change replaces the whole value, so whoever read it once sees the three agree."""

    models: tuple[ModelSpec, ...]
    by_name: Mapping[str, ModelSpec]
    rate_limited: tuple[ModelSpec, ...]

    @classmethod
    def of(cls, models: Sequence[ModelSpec]) -> Pool:
        return cls(
            models=tuple(models),
            by_name={model.name: model for model in models},
            rate_limited=tuple(model for model in models if model.rate_limited),
        )


def price_tier(model: ModelSpec) -> int:
    """The decade of a model's price per million tokens, input and output together; free
    (self-hosted) models are a tier of their own."""
    price = model.input_price_per_mtok + model.output_price_per_mtok
    return math.floor(math.log10(price)) if price > 0 else -99


def tier_prior(model: ModelSpec, pool: Sequence[ModelSpec]) -> float | None:
    """A cold-start prior for a model added without one: the mean prior_quality of the pool's
    models of its price tier that declare one, else of those of the nearest tier that has any
    (a model costing what they cost is most likely of their class), else None."""
    priced = [
        (price_tier(other), other.prior_quality) for other in pool if other.name != model.name
    ]
    known = [(tier, prior) for tier, prior in priced if prior is not None]
    if not known:
        return None
    tier = price_tier(model)
    nearest = min(abs(other - tier) for other, _ in known)
    peers = [prior for other, prior in known if abs(other - tier) == nearest]
    return round(sum(peers) / len(peers), 4)


class ServedPolicies(Protocol):
    """What the catalog asks of the policies a process serves: whether it serves one (an
    experiment may only name those), and its choices (an experiment's off-policy report)."""

    def hosts(self, policy_name: str) -> bool: ...

    def choose(self, policy_name: str, context: Context) -> tuple[Decision, int]: ...


class Catalog:
    def __init__(
        self,
        *,
        store: CatalogSource,
        policies: ServedPolicies,
        models: Sequence[ModelSpec],
        count_outcomes: bool = False,
    ) -> None:
        """``count_outcomes``: keep each model's count of scored outcomes (``outcomes``),
        which only the new-model quota reads."""
        self._store = store
        self._policies = policies
        self._count_outcomes = count_outcomes
        self.rules = NO_RULES
        self.experiments: dict[str, Experiment] = {}
        self.outcomes: dict[str, int] = {}
        self.set_models(models)

    # The pool.

    def set_models(self, models: Sequence[ModelSpec]) -> None:
        self.pool = Pool.of(models)

    def model(self, name: str) -> ModelSpec:
        found = self.pool.by_name.get(name)
        if found is None:
            raise NotFound(f"unknown model {name!r}")
        return found

    def add_model(self, model: ModelSpec) -> ModelSpec:
        """Eligible from the next request on; every policy takes a model it has not seen.
        Without a prior_quality it takes its price tier's (tier_prior), stored with it."""
        if model.prior_quality is None:
            model = replace(model, prior_quality=tier_prior(model, self.pool.models))
        if not self._store.insert_model(model):
            raise Conflict(f"model {model.name!r} exists; change it with PUT /models/{{name}}")
        self.reload_models()
        return self.model(model.name)

    def update_model(self, name: str, changes: Mapping[str, object]) -> ModelSpec:
        """Enables, disables, reprices or retags a model; effective from the next request."""
        current = self.model(name)
        if "tags" in changes:
            changes = {**changes, "tags": frozenset(cast(Sequence[str], changes["tags"]))}
        updated = replace(current, **changes)  # type: ignore[arg-type]
        self._store.upsert_models([updated])
        self.reload_models()
        return self.model(name)

    def reload_models(self) -> None:
        """Takes up the pool as stored, with what other processes' admins changed."""
        stored = tuple(self._store.list_models())
        if stored != self.pool.models:
            self.set_models(stored)

    def scored(self, model: str) -> None:
        """A scored outcome of ``model`` was just stored by this process."""
        if self._count_outcomes:
            self.outcomes[model] = self.outcomes.get(model, 0) + 1

    # The rules.

    def set_rules(self, rules: Rules) -> None:
        """Stores the rules for every process; they apply from this process's next request."""
        unknown = sorted(rules.models_named() - set(self.pool.by_name))
        if unknown:
            raise InvalidInput(("rules",), f"unknown models {unknown}")
        self._store.save_rules(rules.to_document())
        self.rules = rules

    def reload_rules(self) -> None:
        document = self._store.load_rules()
        if document is not None:
            self.rules = Rules.from_document(document)

    # The experiments.

    def experiment(self, name: str) -> Experiment:
        found = self.experiments.get(name)
        if found is None:
            raise NotFound(f"unknown experiment {name!r}")
        return found

    def save_experiment(self, experiment: Experiment, *, create: bool) -> Experiment:
        """Creates an experiment (Conflict if it exists) or replaces one (NotFound if not)."""
        for index, variant in enumerate(experiment.variants):
            if not self._policies.hosts(variant.policy):
                raise InvalidInput(
                    ("variants", str(index), "policy"),
                    f"policy {variant.policy!r} is not served here; serve it by listing it in "
                    "[router] policies",
                )
        if not self._store.save_experiment(experiment.to_document(), create=create):
            if create:
                raise Conflict(f"experiment {experiment.name!r} exists; PUT changes its weights")
            raise NotFound(f"unknown experiment {experiment.name!r}")
        self.experiments = {**self.experiments, experiment.name: experiment}
        return experiment

    def set_weights(self, name: str, weights: Mapping[str, float]) -> Experiment:
        try:
            changed = self.experiment(name).with_weights(weights)
        except ValueError as error:
            raise InvalidInput(("variants",), str(error)) from error
        return self.save_experiment(changed, create=False)

    def experiment_report(self, name: str) -> dict[str, Any]:
        """The experiment's report (experiment_report.py) on its log as stored now."""
        experiment = self.experiment(name)
        return build_experiment_report(
            experiment,
            self._store.experiment_log(name),
            lambda policy_name: functools.partial(self._choose_only, policy_name),
        )

    def _choose_only(self, policy_name: str, context: Context) -> Decision:
        decision, _ = self._policies.choose(policy_name, context)
        return decision

    def reload(self) -> None:
        """What the admin endpoints of any process changed (the models, the rules, the
        experiments), and how many outcomes each model has."""
        self.reload_models()
        self.reload_rules()
        self.experiments = {
            document["name"]: Experiment.from_document(document)
            for document in self._store.load_experiments()
        }
        if self._count_outcomes:
            self.outcomes = self._store.outcome_counts()
