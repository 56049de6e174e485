"""The TOML configuration file's schema: each section as pydantic validates it, once, at start.

settings.py reads the file, checks what crosses sections (a rule naming an unknown model, a
budget of an unknown tenant) and turns it into the RouterConfig every other layer is given.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bandit_router.escalation import DEFAULT_MAX_ATTEMPTS
from bandit_router.gateway.config import GatewaySection, GraderSection, ModelEntry
from bandit_router.keys import Role
from bandit_router.schemas import RulesDoc


class RouterSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str = "linucb"
    cost_weight: float = Field(default=20.0, ge=0.0, allow_inf_nan=False)
    expected_output_tokens: int = Field(default=400, ge=0)
    max_prompt_bytes: int = Field(default=1_000_000, gt=0)
    snapshot_every: int = Field(default=200, gt=0)
    snapshot_interval_s: float = Field(default=30.0, gt=0.0, allow_inf_nan=False)
    api_keys: list[str] = Field(default_factory=list)
    """Admin keys (the older way to give them; see [keys.NAME])."""
    new_model_share: float = Field(default=1.0, gt=0.0, le=1.0)
    new_model_outcomes: int = Field(default=100, ge=0)
    policies: list[str] = Field(default_factory=list)
    """More policies to serve and learn beside `policy`, for experiments' variants."""
    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1, le=10)
    """Attempts one request may make through escalation (1: no escalation)."""
    experiment: str | None = None
    """The experiment of the requests that name none (API.md: the default experiment); one
    of the file's [experiments]."""


class LearningSection(BaseModel):
    """Delayed rewards (Azure Personalizer's semantics); see learner.py."""

    model_config = ConfigDict(extra="forbid")

    reward_wait_s: float = Field(default=0.0, ge=0.0, le=30 * 86400, allow_inf_nan=False)
    default_reward: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    aggregation: Literal["first", "last", "mean", "sum"] = "first"
    settle_s: float = Field(default=2.0, ge=0.0, le=3600.0, allow_inf_nan=False)
    half_life: float | None = Field(default=None, ge=1.0, le=1e9, allow_inf_nan=False)
    """Forgetting, in outcomes learned: see FORGETTING_POLICIES."""
    change_detection: bool | None = None
    """Change detection (docs/policies.md): see DETECTING_POLICIES."""


FORGETTING_POLICIES = ("linucb", "thompson")
"""The policies that take [learning] half_life as their own `half_life` parameter (unless
their [policies.NAME] section sets one): an outcome learned half_life outcomes ago weighs half
as much as the newest (docs/policies.md, "Forgetting")."""

DETECTING_POLICIES = ("linucb",)
"""The policies that take [learning] change_detection as their own `detect_changes` parameter
(unless their [policies.NAME] section sets one)."""


class RetentionSection(BaseModel):
    """How long the decision log (and each decision's feedback) is kept; see retention.py."""

    model_config = ConfigDict(extra="forbid")

    decisions_days: float | None = Field(default=None, gt=0.0, le=36500, allow_inf_nan=False)
    batch_size: int = Field(default=500, gt=0, le=100_000)
    interval_s: float = Field(default=60.0, gt=0.0, le=86400.0, allow_inf_nan=False)


class TenantSection(BaseModel):
    """A tenant is whoever holds one of its API keys; rules and budgets can name it."""

    model_config = ConfigDict(extra="forbid")

    api_keys: list[str] = Field(default_factory=list)
    """Client keys of the tenant (as [keys.NAME] tables with `tenant` are)."""
    # The tenant's quality tier: its requests' defaults, which they may tighten, never loosen.
    cost_weight: float | None = Field(default=None, ge=0.0, le=1e6, allow_inf_nan=False)
    max_cost_usd: float | None = Field(default=None, ge=0.0, le=1e6, allow_inf_nan=False)


class KeySection(BaseModel):
    """One named API key: the name is what the audit log shows, never the key."""

    model_config = ConfigDict(extra="forbid")

    key: str
    role: Role = "client"
    tenant: str | None = None


class BudgetSection(BaseModel):
    """A spend budget with pacing; see budget.py."""

    model_config = ConfigDict(extra="forbid")

    usd: float = Field(gt=0.0, allow_inf_nan=False)
    period_s: float = Field(default=86_400.0, gt=0.0, allow_inf_nan=False)
    step: float = Field(default=200.0, ge=0.0, allow_inf_nan=False)
    max_added: float = Field(default=10_000.0, ge=0.0, allow_inf_nan=False)


class VariantEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    policy: str = Field(min_length=1, max_length=200)
    weight: float = Field(ge=0.0, allow_inf_nan=False)
    shadow: bool = False


class ExperimentSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    salt: str | None = None
    variants: list[VariantEntry] = Field(min_length=1)


class HealthSection(BaseModel):
    """The models' circuit breakers; see health.py."""

    model_config = ConfigDict(extra="forbid")

    failures_to_open: int = Field(default=5, ge=1)
    error_rate_to_open: float = Field(default=0.5, gt=0.0, le=1.0)
    window: int = Field(default=20, ge=1)
    min_outcomes: int = Field(default=10, ge=1)
    slow_ms: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    cooldown_s: float = Field(default=30.0, gt=0.0, allow_inf_nan=False)
    max_cooldown_s: float = Field(default=600.0, gt=0.0, allow_inf_nan=False)
    probes: int = Field(default=1, ge=1)
    successes_to_close: int = Field(default=2, ge=1)


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    router: RouterSection = Field(default_factory=RouterSection)
    gateway: GatewaySection = Field(default_factory=GatewaySection)
    grader: GraderSection | None = None
    learning: LearningSection = Field(default_factory=LearningSection)
    health: HealthSection = Field(default_factory=HealthSection)
    retention: RetentionSection = Field(default_factory=RetentionSection)
    # The same models as POST /models and PUT /rules validate: the file and the API accept
    # and refuse the same entries.
    rules: RulesDoc = Field(default_factory=RulesDoc)
    tenants: dict[str, TenantSection] = Field(default_factory=dict)
    keys: dict[str, KeySection] = Field(default_factory=dict)
    budgets: dict[str, BudgetSection] = Field(default_factory=dict)
    experiments: dict[str, ExperimentSection] = Field(default_factory=dict)
    policies: dict[str, dict[str, float | int | str | list[str]]] = Field(default_factory=dict)
    models: list[ModelEntry] = Field(min_length=1)
