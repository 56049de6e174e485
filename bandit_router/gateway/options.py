"""The gateway's configuration values: where each model is served, and the [gateway] section.

Kept apart from core.ModelSpec: the router chooses among models by their prices and tags, and
never needs to know where a model is served nor how its key is found.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL_ALIAS = "router"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_BODY_BYTES = 20_000_000


@dataclass(frozen=True)
class Upstream:
    """An OpenAI-compatible server that serves one pool model."""

    base_url: str
    """Up to the version, e.g. https://api.openai.com/v1 (the gateway appends
    /chat/completions)."""
    upstream_model: str
    """The name the upstream knows the model by."""
    api_key_env: str | None = None
    """The environment variable holding the upstream's key: the key is read from the
    environment when the gateway starts, never from a configuration file."""
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class GatewayOptions:
    model_alias: str = DEFAULT_MODEL_ALIAS
    """The `model` a request names to be routed; any other must be a pool model's name."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest request body accepted (images travel inline, base64-encoded)."""
    cascade_accept: float | None = None
    """When set, every routed non-streaming request is a cascade with this threshold (the
    request's ``bandit.cascade.accept`` overrides it)."""
