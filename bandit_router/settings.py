"""Settings from the environment and the TOML configuration file, validated once at start."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bandit_router.config_file import DETECTING_POLICIES as DETECTING_POLICIES
from bandit_router.config_file import FORGETTING_POLICIES as FORGETTING_POLICIES
from bandit_router.config_file import ConfigFile
from bandit_router.core import ModelSpec, PolicySpec
from bandit_router.escalation import DEFAULT_MAX_ATTEMPTS
from bandit_router.gateway.config import grader_options
from bandit_router.gateway.grading import GRADER_SOURCE, GraderOptions
from bandit_router.gateway.options import GatewayOptions, Upstream
from bandit_router.keys import ApiKey, MalformedKey, Role, digest_of

DEFAULT_DATABASE_URL = "sqlite:///var/bandit_router.db"
DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_models.toml")


class Settings(BaseSettings):
    """What the environment may set: BANDIT_ROUTER_DATABASE_URL, _CONFIG, and the keys of each
    role, comma-separated: _ADMIN_KEYS (or its older name _API_KEYS), _CLIENT_KEYS,
    _METRICS_KEYS."""

    model_config = SettingsConfigDict(env_prefix="BANDIT_ROUTER_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    config: Path | None = None
    api_keys: str = ""
    admin_keys: str = ""
    client_keys: str = ""
    metrics_keys: str = ""

    def keys_by_role(self) -> dict[Role, list[str]]:
        def split(*lists: str) -> list[str]:
            return [key.strip() for text in lists for key in text.split(",") if key.strip()]

        return {
            "admin": split(self.admin_keys, self.api_keys),
            "client": split(self.client_keys),
            "metrics": split(self.metrics_keys),
        }


class ConfigError(ValueError):
    """The configuration file is unreadable or breaks a rule; the message names the key."""


@dataclass(frozen=True)
class RouterConfig:
    """The validated configuration every other layer is given."""

    policy: PolicySpec
    cost_weight: float
    expected_output_tokens: int
    max_prompt_bytes: int
    snapshot_every: int
    snapshot_interval_s: float
    models: tuple[ModelSpec, ...]
    keys: tuple[ApiKey, ...] = ()
    """Every configured API key, with its name, role and tenant (keys.py)."""
    reward_wait_s: float = 0.0
    default_reward: float | None = None
    aggregation: str = "first"
    settle_s: float = 2.0
    health: Mapping[str, float | int | None] = field(default_factory=dict)
    """The [health] section's values, as BreakerSettings takes them."""
    rules: Mapping[str, Any] = field(default_factory=dict)
    """The [rules] section as a document (eligibility.Rules.from_document)."""
    tenant_tiers: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Per tenant with a tier, its cost_weight and max_cost_usd as TenantTier takes them."""
    new_model_share: float = 1.0
    new_model_outcomes: int = 100
    extra_policies: tuple[PolicySpec, ...] = ()
    """Policies served beside `policy` (experiments' variants)."""
    experiments: tuple[Mapping[str, Any], ...] = ()
    """The [experiments.NAME] sections as documents (experiments.Experiment.from_document)."""
    budgets: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Per scope (a tenant, or "default"), the [budgets.SCOPE] values as Budget takes them."""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    default_experiment: str | None = None
    """The experiment requests without one are drawn from ([router] experiment)."""
    policy_params: Mapping[str, Mapping[str, float | int | str | Sequence[str]]] = field(
        default_factory=dict
    )
    """Every [policies.NAME] section, served or not (the replay takes them from here)."""
    upstreams: Mapping[str, Upstream] = field(default_factory=dict)
    """Per pool model with a `base_url`: where the gateway calls it."""
    gateway: GatewayOptions = field(default_factory=GatewayOptions)
    grader: GraderOptions | None = None
    """The [grader] section, with its judge's upstream resolved; None: no grading."""
    retention_days: float | None = None
    """[retention] decisions_days: None keeps the logs for ever."""
    retention_batch: int = 500
    retention_interval_s: float = 60.0


def _default_config_text() -> str:
    return DEFAULT_CONFIG_PATH.read_text()


def load_config(
    path: Path | None = None, *, environment_keys: Mapping[Role, Sequence[str]] | None = None
) -> RouterConfig:
    """Reads and validates the TOML file (the packaged default when no path is given)."""
    source = str(path) if path else "the default configuration"
    try:
        text = path.read_text() if path else _default_config_text()
        raw: dict[str, Any] = tomllib.loads(text)
    except OSError as error:
        raise ConfigError(f"cannot read {source}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source} is not valid TOML: {error}") from error
    return config_from_mapping(raw, source=source, environment_keys=environment_keys)


def _api_keys(
    parsed: ConfigFile, environment_keys: Mapping[Role, Sequence[str]], source: str
) -> tuple[ApiKey, ...]:
    """Every key of the file and the environment, each named by where it was given."""
    given: list[tuple[str, str, Role, str | None]] = [
        *(
            (f"router.api_keys[{i}]", key, "admin", None)
            for i, key in enumerate(parsed.router.api_keys)
        ),
        *(
            (f"tenants.{tenant}.api_keys[{i}]", key, "client", tenant)
            for tenant, section in parsed.tenants.items()
            for i, key in enumerate(section.api_keys)
        ),
        *((name, entry.key, entry.role, entry.tenant) for name, entry in parsed.keys.items()),
        *(
            (f"env.{role}_keys[{i}]", key, role, None)
            for role, keys in environment_keys.items()
            for i, key in enumerate(keys)
        ),
    ]
    keys: list[ApiKey] = []
    first: dict[bytes, tuple[str, Role, str | None]] = {}
    for name, value, role, tenant in given:
        where = f"keys.{name}.key" if name in parsed.keys else name
        try:
            digest = digest_of(value, where)
        except MalformedKey as error:
            raise ConfigError(f"{source}: {error}") from error
        if digest in first:
            earlier, earlier_role, earlier_tenant = first[digest]
            if (earlier_role, earlier_tenant) == (role, tenant):
                continue  # the same grant given twice (say in the file and the environment)
            raise ConfigError(
                f"{source}: {where} is the same key as {earlier}, with another role or "
                "tenant: a key has one role and at most one tenant"
            )
        first[digest] = (where, role, tenant)
        if tenant is not None and role != "client":
            raise ConfigError(f"{source}: keys.{name}: only a client key belongs to a tenant")
        if tenant is not None and tenant not in parsed.tenants:
            raise ConfigError(
                f"{source}: keys.{name}.tenant: {tenant!r} is not one of the [tenants] "
                f"({', '.join(sorted(parsed.tenants)) or 'none is configured'})"
            )
        keys.append(ApiKey(name=name, role=role, digest=digest, tenant=tenant))
    return tuple(keys)


def config_from_mapping(
    raw: Mapping[str, Any],
    *,
    source: str = "configuration",
    environment_keys: Mapping[Role, Sequence[str]] | None = None,
) -> RouterConfig:
    try:
        parsed = ConfigFile.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}"
            for issue in error.errors()
        )
        raise ConfigError(f"{source}: {problems}") from error
    names = [entry.name for entry in parsed.models]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{source}: models: duplicate names {duplicates}")
    if parsed.gateway.model_alias in names:
        raise ConfigError(
            f"{source}: gateway.model_alias: {parsed.gateway.model_alias!r} is a model's name; "
            "the alias must name no model, or the model could not be asked for"
        )
    router = parsed.router
    if parsed.learning.half_life is not None:
        for forgetting in FORGETTING_POLICIES:
            parsed.policies.setdefault(forgetting, {}).setdefault(
                "half_life", parsed.learning.half_life
            )
    if parsed.learning.change_detection is not None:
        for detecting in DETECTING_POLICIES:
            parsed.policies.setdefault(detecting, {}).setdefault(
                "detect_changes", parsed.learning.change_detection
            )
    policy = PolicySpec.configured(router.policy, parsed.policies)
    for key, value in policy.params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: policies.{router.policy}.{key} must be finite")
    keys = _api_keys(parsed, environment_keys or {}, source)
    known = set(names)
    named = {
        model
        for section in (parsed.rules.tasks, parsed.rules.tenants)
        for rule in section.values()
        for model in [*(rule.allow or []), *rule.deny]
    }
    if named - known:
        raise ConfigError(f"{source}: rules: unknown models {sorted(named - known)}")
    served = {router.policy, *router.policies}
    for spec in (PolicySpec.configured(name, parsed.policies) for name in sorted(served)):
        planned = spec.params.get("plan_attempts")
        if isinstance(planned, int | float) and planned > router.max_attempts:
            raise ConfigError(
                f"{source}: policies.{spec.section}.plan_attempts ({planned}) is more than "
                f"router.max_attempts ({router.max_attempts}): it would plan escalations the "
                "router refuses"
            )
    experiments = []
    for name, section in parsed.experiments.items():
        for variant in section.variants:
            if variant.policy not in served:
                raise ConfigError(
                    f"{source}: experiments.{name}: policy {variant.policy!r} is not served; "
                    "list it in [router] policies"
                )
        if any(v.shadow and v.weight != 0 for v in section.variants) or section.variants[0].shadow:
            raise ConfigError(
                f"{source}: experiments.{name}: a shadow variant has weight 0 and is not the "
                "first variant (the control)"
            )
        if len({v.name for v in section.variants}) < len(section.variants):
            raise ConfigError(f"{source}: experiments.{name}: variant names must be unique")
        if not sum(v.weight for v in section.variants) > 0:
            raise ConfigError(
                f"{source}: experiments.{name}: weights must sum to a positive number"
            )
        experiments.append(
            {
                "name": name,
                "salt": section.salt or name,
                "variants": [v.model_dump() for v in section.variants],
            }
        )
    if router.experiment is not None and router.experiment not in parsed.experiments:
        raise ConfigError(
            f"{source}: router.experiment: {router.experiment!r} is not one of the file's "
            f"[experiments] ({', '.join(sorted(parsed.experiments)) or 'none is configured'})"
        )
    scopes = {*parsed.tenants, "default", *(f"experiment:{name}" for name in parsed.experiments)}
    scopes |= {GRADER_SOURCE} if parsed.grader is not None else set()
    unknown_scopes = set(parsed.budgets) - scopes
    if unknown_scopes:
        raise ConfigError(
            f"{source}: budgets: {sorted(unknown_scopes)} are neither tenants, 'default' nor "
            "'experiment:NAME' of a configured experiment (nor 'grader', with a [grader])"
        )
    upstreams = {
        entry.name: upstream
        for entry in parsed.models
        if (upstream := entry.upstream()) is not None
    }
    try:
        grader = grader_options(
            parsed.grader, parsed.gateway, upstreams, set(names),
            budgeted=set(parsed.budgets), tenants=set(parsed.tenants),
        )  # fmt: skip
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from error
    unknown_tenants = set(parsed.rules.tenants) - set(parsed.tenants)
    if unknown_tenants:
        raise ConfigError(f"{source}: rules.tenants: unknown tenants {sorted(unknown_tenants)}")
    return RouterConfig(
        policy=policy,
        cost_weight=router.cost_weight,
        expected_output_tokens=router.expected_output_tokens,
        max_prompt_bytes=router.max_prompt_bytes,
        snapshot_every=router.snapshot_every,
        snapshot_interval_s=router.snapshot_interval_s,
        keys=keys,
        models=tuple(entry.to_spec() for entry in parsed.models),
        reward_wait_s=parsed.learning.reward_wait_s,
        default_reward=parsed.learning.default_reward,
        aggregation=parsed.learning.aggregation,
        settle_s=parsed.learning.settle_s,
        health=parsed.health.model_dump(),
        rules=parsed.rules.model_dump(),
        tenant_tiers={
            name: tier
            for name, tenant in parsed.tenants.items()
            if (
                tier := tenant.model_dump(
                    include={"cost_weight", "max_cost_usd"}, exclude_none=True
                )
            )
        },
        new_model_share=router.new_model_share,
        new_model_outcomes=router.new_model_outcomes,
        extra_policies=tuple(
            PolicySpec.configured(name, parsed.policies)
            for name in dict.fromkeys(router.policies)
            if name != router.policy
        ),
        experiments=tuple(experiments),
        budgets={scope: budget.model_dump() for scope, budget in parsed.budgets.items()},
        max_attempts=router.max_attempts,
        default_experiment=router.experiment,
        policy_params=parsed.policies,
        upstreams=upstreams,
        gateway=parsed.gateway.options(),
        grader=grader,
        retention_days=parsed.retention.decisions_days,
        retention_batch=parsed.retention.batch_size,
        retention_interval_s=parsed.retention.interval_s,
    )
