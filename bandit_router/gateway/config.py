"""The configuration file's side of the gateway: a [[models]] entry with its upstream, and the
[gateway] section, validated as settings.py validates the rest of the file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bandit_router.core import ModelSpec
from bandit_router.gateway.grading import DEFAULT_RUBRIC, GRADER_SOURCE, GraderOptions
from bandit_router.gateway.options import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MODEL_ALIAS,
    DEFAULT_TIMEOUT_S,
    GatewayOptions,
    Upstream,
)
from bandit_router.schemas import ModelIn

UPSTREAM_FIELDS = frozenset({"base_url", "api_key_env", "upstream_model", "timeout_s"})


class ModelEntry(ModelIn):
    """A [[models]] entry: the model as POST /models takes it (schemas.ModelIn, so the file and
    the API accept and refuse the same models), plus where the gateway calls it. Only the file
    says that: an upstream names the environment variable of its key, which is the operator's
    deployment, not something an API call should change."""

    base_url: str | None = Field(default=None, min_length=1, max_length=2000, pattern=r"^https?://")
    api_key_env: str | None = Field(default=None, min_length=1, max_length=200)
    upstream_model: str | None = Field(default=None, min_length=1, max_length=200)
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0.0, le=3600.0, allow_inf_nan=False)

    def to_spec(self) -> ModelSpec:
        fields = self.model_dump(exclude=set(UPSTREAM_FIELDS))
        return ModelSpec(**{**fields, "tags": frozenset(self.tags)})

    def upstream(self) -> Upstream | None:
        if self.base_url is None:
            return None
        return Upstream(
            base_url=self.base_url.rstrip("/"),
            upstream_model=self.upstream_model or self.name,
            api_key_env=self.api_key_env,
            timeout_s=self.timeout_s,
        )


class GatewaySection(BaseModel):
    """The OpenAI-compatible endpoints (gateway/)."""

    model_config = ConfigDict(extra="forbid")

    model_alias: str = Field(default=DEFAULT_MODEL_ALIAS, min_length=1, max_length=200)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    cascade_accept: float | None = Field(default=None, ge=0.0, le=1.0)

    def options(self) -> GatewayOptions:
        return GatewayOptions(**self.model_dump())


class GraderSection(BaseModel):
    """The built-in grader (gateway/grader.py): which judge, how many decisions, how."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    base_url: str | None = Field(default=None, min_length=1, max_length=2000, pattern=r"^https?://")
    api_key_env: str | None = Field(default=None, min_length=1, max_length=200)
    upstream_model: str | None = Field(default=None, min_length=1, max_length=200)
    timeout_s: float = Field(default=30.0, gt=0.0, le=3600.0, allow_inf_nan=False)
    share: float = Field(default=0.1, ge=0.0, le=1.0)
    rubric: str = Field(default=DEFAULT_RUBRIC, min_length=1, max_length=100_000)
    concurrency: int = Field(default=2, ge=1, le=256)
    input_price_per_mtok: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    output_price_per_mtok: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    lease_s: float = Field(default=120.0, gt=0.0, le=86_400.0, allow_inf_nan=False)
    max_tries: int = Field(default=3, ge=1, le=100)
    retry_backoff_s: float = Field(default=5.0, ge=0.0, le=86_400.0, allow_inf_nan=False)
    poll_s: float = Field(default=1.0, gt=0.0, le=3600.0, allow_inf_nan=False)

    @field_validator("rubric")
    @classmethod
    def _names_the_answer(cls, rubric: str) -> str:
        if "{answer}" not in rubric:
            raise ValueError("the rubric must contain {answer} (and usually {prompt})")
        return rubric

    def options(self, upstreams: Mapping[str, Upstream], pool: set[str]) -> GraderOptions:
        """Raises ValueError (naming the field) when the judge cannot be called."""
        if self.lease_s <= self.timeout_s:
            raise ValueError(
                f"grader.lease_s ({self.lease_s}) must be longer than grader.timeout_s "
                f"({self.timeout_s}): a job's claim must outlast its judge's call"
            )
        if self.base_url is not None:
            upstream = Upstream(
                base_url=self.base_url.rstrip("/"),
                upstream_model=self.upstream_model or self.model,
                api_key_env=self.api_key_env,
                timeout_s=self.timeout_s,
            )
        elif self.model in upstreams:
            upstream = replace(upstreams[self.model], timeout_s=self.timeout_s)
        elif self.model in pool:
            raise ValueError(
                f"grader.model: {self.model!r} has no base_url in [[models]]; give it one, "
                "or give [grader] its own base_url"
            )
        else:
            raise ValueError(
                f"grader.model: {self.model!r} is not a pool model; name one with a base_url, "
                "or give [grader] its own base_url"
            )
        return GraderOptions(
            model=self.model,
            upstream=upstream,
            **self.model_dump(
                exclude={"model", "base_url", "api_key_env", "upstream_model", "timeout_s"}
            ),
        )


def grader_options(
    section: GraderSection | None,
    gateway: GatewaySection,
    upstreams: Mapping[str, Upstream],
    pool: set[str],
    *,
    budgeted: set[str],
    tenants: set[str],
) -> GraderOptions | None:
    """The [grader] section checked against the rest of the file; raises ValueError."""
    if section is None:
        if gateway.cascade_accept is not None:
            raise ValueError(
                "gateway.cascade_accept: the cascade grades with the grader's judge; "
                "configure a [grader]"
            )
        return None
    if GRADER_SOURCE in budgeted and GRADER_SOURCE in tenants:
        raise ValueError(
            "budgets.grader: 'grader' is both a tenant and the grader's budget scope; "
            "rename the tenant"
        )
    return section.options(upstreams, pool)
