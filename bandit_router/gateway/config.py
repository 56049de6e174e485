"""The configuration file's side of the gateway: a [[models]] entry with its upstream, and the
[gateway] section, validated as settings.py validates the rest of the file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bandit_router.core import ModelSpec
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

    def options(self) -> GatewayOptions:
        return GatewayOptions(**self.model_dump())
