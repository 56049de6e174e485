"""The values of the Python client (client.py): what /route and /feedback take and answer,
the errors it raises, and what a cascade ends with.

Like the client, it imports nothing of the server: these are the wire's shapes as docs/api.md
states them, read from JSON, not the server's own models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypedDict, TypeVar

Answer = TypeVar("Answer")
CallError = Literal["rate_limited", "timeout", "server_error", "refused"]


class RouteFields(TypedDict, total=False):
    """The optional fields of a /route request (docs/api.md) besides the text and ``previous``."""

    task_type: str
    features: Mapping[str, float | str]
    candidates: Sequence[str]
    constraints: Mapping[str, Any]
    cost_weight: float
    unit_id: str
    experiment: str


class FeedbackFields(TypedDict, total=False):
    """The optional fields of a /feedback request (docs/api.md) besides the decision id."""

    quality: float
    cost_usd: float
    input_tokens: int
    output_tokens: int
    latency_ms: float
    error: CallError
    source: str


class RouterError(Exception):
    """The service answered with an error; ``detail`` is its JSON ``detail``."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class NoEligibleModel(RouterError):
    """503: no model may take the request; ``excluded`` gives each model's reason."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(status_code, detail)
        reasons = detail.get("excluded") if isinstance(detail, dict) else None
        self.excluded: dict[str, str] = dict(reasons or {})


class ModelCallFailed(Exception):
    """Raise it from a cascade's ``call`` when the model's call failed: the failure is reported
    as feedback (it feeds the model's circuit breaker), graded 0, and the cascade escalates
    when it may.

    The grade of 0 says the attempt gave no answer, and the router needs a grade to escalate
    (docs/api.md); the policy learns it as it would a wrong answer, so frequent failures make a
    model less chosen for such requests, while the breaker keeps it out during an outage."""

    def __init__(self, error: CallError, message: str = "") -> None:
        super().__init__(message or error)
        self.error: CallError = error


@dataclass(frozen=True)
class Route:
    """A /route answer (docs/api.md)."""

    decision_id: str
    model: str
    probability: float
    policy: str
    experiment: str | None
    variant: str | None
    cost_weight: float
    fallbacks: tuple[str, ...]
    scores: Mapping[str, Mapping[str, float]]
    excluded: Mapping[str, str]
    context: Mapping[str, float | str]
    attempt: int
    max_attempts: int
    chain_id: str

    @property
    def may_escalate(self) -> bool:
        return self.attempt < self.max_attempts

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Route:
        return cls(
            decision_id=body["decision_id"],
            model=body["model"],
            probability=body["probability"],
            policy=body["policy"],
            experiment=body.get("experiment"),
            variant=body.get("variant"),
            cost_weight=body["cost_weight"],
            fallbacks=tuple(body.get("fallbacks", ())),
            scores=body.get("scores", {}),
            excluded=body.get("excluded", {}),
            context=body.get("context", {}),
            attempt=body.get("attempt", 1),
            max_attempts=body.get("max_attempts", 1),
            chain_id=body.get("chain_id", body["decision_id"]),
        )


@dataclass(frozen=True)
class Receipt:
    """A /feedback answer: ``duplicate`` when this (decision, source) was already recorded,
    ``late`` when it came after the reward window (kept, not learned)."""

    decision_id: str
    reward: float | None
    duplicate: bool
    late: bool


@dataclass(frozen=True)
class Attempt(Generic[Answer]):
    route: Route
    answer: Answer | None
    """None when the call failed (``error``)."""
    quality: float
    latency_ms: float
    error: CallError | None = None


@dataclass(frozen=True)
class Cascade(Generic[Answer]):
    """What a cascade ended with: every attempt, the last one's answer and grade."""

    attempts: tuple[Attempt[Answer], ...]
    accepted: bool
    """Whether the last attempt was graded at or above ``accept``; False when the router
    allowed no further attempt before that."""
    stopped_by: RouterError | None = None
    """Why an escalation was refused (e.g. ``NoEligibleModel`` when every model left was
    tried or excluded); the attempts made before it are kept."""

    @property
    def answer(self) -> Answer | None:
        return self.attempts[-1].answer

    @property
    def quality(self) -> float:
        return self.attempts[-1].quality
