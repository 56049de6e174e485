"""Which models of the pool one request may use, and why each other one may not.

Every mask is a named step here, and none reads storage: the router reads what a step needs
(the health board's verdicts, the rate usage, the budget's remaining money, the outcome counts)
and passes it in. The static rules (``split_eligible``) and the run-time masks (``blocked``)
meet in ``settle``, which reapplies them until no step masks another model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bandit_router.core import Arm, ModelSpec, NoEligibleModel, make_tuple, stable_uniform


@dataclass(frozen=True)
class Constraints:
    """A request's limits (API.md). The router applies ``max_latency_ms`` to the latencies
    that feedback reported (``HealthBoard.slower_than``), the others are applied here."""

    max_cost_usd: float | None = None
    max_latency_ms: float | None = None
    sensitive: bool = False
    min_context_tokens: int | None = None


@dataclass(frozen=True)
class TenantTier:
    """A tenant's quality tier (``[tenants.NAME] cost_weight, max_cost_usd``): the defaults of
    its requests. A request may make them stricter (a higher cost weight, a lower max cost),
    never looser: a looser value is replaced by the tier's."""

    cost_weight: float | None = None
    max_cost_usd: float | None = None
    _capped: Constraints = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Most requests state no constraint: those of a capped tier share one frozen value.
        object.__setattr__(self, "_capped", Constraints(max_cost_usd=self.max_cost_usd))

    def cost_weight_for(self, requested: float | None, default: float) -> float:
        floor = self.cost_weight
        if floor is None:
            return default if requested is None else requested
        return floor if requested is None or requested < floor else requested

    def constraints_for(self, asked: Constraints) -> Constraints:
        cap = self.max_cost_usd
        if cap is None or (asked.max_cost_usd is not None and asked.max_cost_usd <= cap):
            return asked
        if (
            asked.max_latency_ms is None
            and not asked.sensitive
            and asked.min_context_tokens is None
        ):
            return self._capped
        return replace(asked, max_cost_usd=cap)


@dataclass(frozen=True)
class ListRule:
    """An allow list (when given, only these models) and a deny list (never these)."""

    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()

    def admits(self, model: str) -> bool:
        return model not in self.deny and (self.allow is None or model in self.allow)


@dataclass(frozen=True)
class Rules:
    """Who may use which model, changeable at run time (PUT /rules).

    ``required_tags``: per task type, the capability tags a model needs to take it (e.g. code
    → {"code"}); ``tasks`` and ``tenants``: allow and deny lists per task type and per API
    key's tenant. A model a rule keeps out is excluded as ``missing_capability`` or
    ``denied``.
    """

    required_tags: Mapping[str, frozenset[str]] = field(default_factory=dict)
    tasks: Mapping[str, ListRule] = field(default_factory=dict)
    tenants: Mapping[str, ListRule] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Rules:
        """From the plain form the configuration file and the admin API share."""

        def lists(section: Mapping[str, Mapping[str, Any]]) -> dict[str, ListRule]:
            return {
                name: ListRule(
                    allow=None if rule.get("allow") is None else frozenset(rule["allow"]),
                    deny=frozenset(rule.get("deny") or ()),
                )
                for name, rule in section.items()
            }

        return cls(
            required_tags={
                task: frozenset(tags)
                for task, tags in (document.get("required_tags") or {}).items()
            },
            tasks=lists(document.get("tasks") or {}),
            tenants=lists(document.get("tenants") or {}),
        )

    def to_document(self) -> dict[str, Any]:
        def lists(section: Mapping[str, ListRule]) -> dict[str, Any]:
            return {
                name: {
                    "allow": None if rule.allow is None else sorted(rule.allow),
                    "deny": sorted(rule.deny),
                }
                for name, rule in section.items()
            }

        return {
            "required_tags": {task: sorted(tags) for task, tags in self.required_tags.items()},
            "tasks": lists(self.tasks),
            "tenants": lists(self.tenants),
        }

    def models_named(self) -> set[str]:
        named: set[str] = set()
        for rule in (*self.tasks.values(), *self.tenants.values()):
            named |= rule.deny | (rule.allow or frozenset())
        return named

    def reason(self, model: ModelSpec, task: str, tenant: str | None) -> str | None:
        needed = self.required_tags.get(task)
        if needed and not needed <= model.tags:
            return "missing_capability"
        task_rule = self.tasks.get(task)
        if task_rule is not None and not task_rule.admits(model.name):
            return "denied"
        tenant_rule = None if tenant is None else self.tenants.get(tenant)
        if tenant_rule is not None and not tenant_rule.admits(model.name):
            return "denied"
        return None

    def __bool__(self) -> bool:
        return bool(self.required_tags or self.tasks or self.tenants)


NO_RULES = Rules()


@dataclass(frozen=True)
class Eligibility:
    """The eligible models as arms priced for this request, the others with a reason."""

    eligible: tuple[Arm, ...]
    excluded: dict[str, str]


def split_eligible(
    models: Sequence[ModelSpec],
    *,
    prompt_tokens: float,
    expected_output_tokens: int,
    candidates: Sequence[str] | None,
    constraints: Constraints,
    blocked: Mapping[str, str] | None = None,
    rules: Rules = NO_RULES,
    task: str = "",
    tenant: str | None = None,
) -> Eligibility:
    """Applies the masks before any policy sees the arms, so propensities are over the eligible.

    The first failing rule names the reason, in the order: not_candidate, disabled, the
    ``rules`` (missing_capability, denied), not_local, context_too_long, over_max_cost (the
    model's predicted cost is above ``constraints.max_cost_usd``), then the reason ``blocked``
    gives a model (the run-time masks: unhealthy, too_slow, already_tried, rate_limited,
    over_budget, new_model_quota).
    """
    allowed = None if candidates is None else set(candidates)
    needed_context = max(
        prompt_tokens + expected_output_tokens, constraints.min_context_tokens or 0
    )
    max_cost = constraints.max_cost_usd
    sensitive = constraints.sensitive
    # Asked once, not per model: Rules.__bool__ is a Python call.
    ruled_by = rules if rules else None
    eligible: list[Arm] = []
    excluded: dict[str, str] = {}
    for model in models:
        # ModelSpec.price_usd's arithmetic, in the same order (the same float), without a
        # method call per model.
        cost = (
            prompt_tokens * model.input_price_per_mtok
            + expected_output_tokens * model.output_price_per_mtok
        ) / 1_000_000
        if allowed is not None and model.name not in allowed:
            excluded[model.name] = "not_candidate"
        elif not model.enabled:
            excluded[model.name] = "disabled"
        elif ruled_by is not None and (ruled := ruled_by.reason(model, task, tenant)) is not None:
            excluded[model.name] = ruled
        elif sensitive and "local" not in model.tags:
            excluded[model.name] = "not_local"
        elif model.context_window < needed_context:
            excluded[model.name] = "context_too_long"
        elif max_cost is not None and cost > max_cost:
            excluded[model.name] = "over_max_cost"
        elif blocked and model.name in blocked:
            excluded[model.name] = blocked[model.name]
        else:
            eligible.append(make_tuple(Arm, (model.name, cost, model.tags, model.prior_quality)))
    return Eligibility(eligible=tuple(eligible), excluded=excluded)


def unavailable(
    unhealthy: Iterable[str], too_slow: Iterable[str], tried: Iterable[str]
) -> dict[str, str]:
    """The first run-time masks: open breakers (``unhealthy``), then models over the request's
    ``max_latency_ms`` (``too_slow``), then the models an escalation already tried
    (``already_tried``, which replaces any earlier reason). Later masks add to this dict."""
    blocked = dict.fromkeys(unhealthy, "unhealthy")
    for name in too_slow:
        blocked.setdefault(name, "too_slow")
    for name in tried:
        blocked[name] = "already_tried"
    return blocked


def mask_over_rate(
    blocked: dict[str, str],
    rate_limited: Sequence[ModelSpec],
    usage: Mapping[str, tuple[int, int]],
    tokens: int,
) -> None:
    """Masks (``rate_limited``) the models whose minute, by ``usage`` (requests, tokens) across
    every process, cannot take ``tokens`` more; an earlier reason (unhealthy, ...) stays."""
    for model in rate_limited:
        requests, used = usage.get(model.name, (0, 0))
        rpm, tpm = model.requests_per_minute, model.tokens_per_minute
        if (rpm is not None and requests >= rpm) or (tpm is not None and used + tokens > tpm):
            blocked.setdefault(model.name, "rate_limited")


def over_budget(eligible: Sequence[Arm], remaining_usd: float) -> dict[str, str]:
    """A budget's cap: the models priced above what the budget has left, unless they are the
    cheapest eligible, so that only the cheapest remain (a free local model keeps serving)."""
    cheapest = min(arm.prior_cost_usd for arm in eligible)
    return {
        arm.name: "over_budget"
        for arm in eligible
        if arm.prior_cost_usd > remaining_usd and arm.prior_cost_usd > cheapest
    }


@dataclass(frozen=True)
class NewModelQuota:
    """A model with fewer than ``outcomes`` scored outcomes is eligible for ``share`` of the
    requests only, while some eligible model has that many."""

    share: float
    outcomes: int

    def held_back(
        self, eligible: Sequence[Arm], scored: Mapping[str, int], draw_key: str
    ) -> dict[str, str]:
        """The new models this request may not try (``new_model_quota``): each is let through
        on its share of requests, by a uniform ``draw_key`` fixes (a reproducible mask)."""
        needed = self.outcomes
        new = [arm.name for arm in eligible if scored.get(arm.name, 0) < needed]
        if not new or len(new) == len(eligible):
            return {}  # nothing is new, or nothing is established to fall back on
        share = self.share
        return {
            name: "new_model_quota"
            for name in new
            if stable_uniform("quota", draw_key, name) >= share
        }


def settle(
    models: Sequence[ModelSpec],
    *,
    prompt_tokens: float,
    expected_output_tokens: int,
    candidates: Sequence[str] | None,
    constraints: Constraints,
    blocked: dict[str, str],
    rules: Rules,
    task: str,
    tenant: str | None,
    remaining_usd: float | None,
    quota: NewModelQuota | None,
    scored: Mapping[str, int],
    draw_key: str,
) -> Eligibility:
    """The static rules and the run-time masks, then the masks that depend on what is
    eligible: the budget's cap (``remaining_usd``; None: no budget) and the new-model quota.
    Each of those adds to ``blocked`` and the split is made again, until none masks another
    model. Raises NoEligibleModel, with every model's reason, when none is left."""
    while True:
        eligibility = split_eligible(
            models,
            prompt_tokens=prompt_tokens,
            expected_output_tokens=expected_output_tokens,
            candidates=candidates,
            constraints=constraints,
            blocked=blocked,
            rules=rules,
            task=task,
            tenant=tenant,
        )
        eligible = eligibility.eligible
        if not eligible:
            raise NoEligibleModel(eligibility.excluded)
        if remaining_usd is not None and (over := over_budget(eligible, remaining_usd)):
            blocked.update(over)
            continue
        if quota is not None and (held := quota.held_back(eligible, scored, draw_key)):
            blocked.update(held)
            continue
        return eligibility
