"""Values shared by every layer, and the one Policy protocol.

Only the standard library is imported here, so that every other module can depend on it.
"""

from __future__ import annotations

import hashlib
import operator
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol, TypeAlias, get_args

FeatureValue: TypeAlias = float | str
Features: TypeAlias = Mapping[str, FeatureValue]

ESCALATION_FEATURES = ("attempt", "previous_model", "previous_quality")
"""The context keys an escalation adds (escalation.py): which attempt this is, the model tried
last and its grade. A first attempt's context has none of them."""

ErrorKind: TypeAlias = Literal["rate_limited", "timeout", "server_error", "refused"]
ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)

ExclusionReason: TypeAlias = Literal[
    "not_candidate",
    "disabled",
    "missing_capability",
    "denied",
    "not_local",
    "context_too_long",
    "over_max_cost",
    "unhealthy",
    "too_slow",
    "already_tried",
    "rate_limited",
    "over_budget",
    "new_model_quota",
]
"""Why a model was not eligible for a request (eligibility.py), in the order of precedence:
the first that applies is reported. ``over_max_cost``: the model's predicted cost is above the
request's (or its tenant's) max_cost_usd; ``over_budget``: a budget's cap leaves only the
cheapest eligible models."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of the pool, as configured."""

    name: str
    provider: str
    input_price_per_mtok: float
    output_price_per_mtok: float
    context_window: int
    tags: frozenset[str] = frozenset()
    enabled: bool = True
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    """Rate limits for the whole deployment (every process counts against the same ones)."""
    prior_quality: float | None = None
    """The quality expected of the model before any outcome (a benchmark score, say)."""

    @property
    def rate_limited(self) -> bool:
        return self.requests_per_minute is not None or self.tokens_per_minute is not None

    def price_usd(self, input_tokens: float, output_tokens: float) -> float:
        return (
            input_tokens * self.input_price_per_mtok + output_tokens * self.output_price_per_mtok
        ) / 1_000_000


class Arm(NamedTuple):
    """An arm eligible for one request, with the cost its prices predict for that request.

    The prior cost lets a policy rank a model it has never tried by what it will cost, and
    lets a cost model learn only the residual between the observed and the priced cost.
    (A NamedTuple, not a dataclass: a request builds one per eligible model, and a frozen
    dataclass costs three times as much to build. It is just as immutable.)
    """

    name: str
    prior_cost_usd: float
    tags: frozenset[str] = frozenset()
    prior_quality: float | None = None


make_tuple = tuple.__new__
"""Builds an Arm or an ArmScore from a tuple of its fields, as ``make_tuple(Arm, (name, cost))``:
a NamedTuple's own constructor is a Python function reached through the type's call, which
costs about twice as much, and a request builds one Arm and one ArmScore per eligible model."""


_ARM_NAME = operator.itemgetter(0)


@dataclass(frozen=True)
class Context:
    """What a policy sees for one request.

    The eligible arms travel with the context, so a policy never owns the arm list: models can
    be added, removed or masked without retraining. ``draw_key`` seeds the policy's random draw
    for this request (the decision id in the service), so a decision can be reproduced.
    ``words`` are the prompt's first word tokens, lower-cased; they are filled only for a
    policy that reads them (``Policy.reads_words``), since most policies never look.
    """

    features: Features
    arms: tuple[Arm, ...]
    cost_weight: float
    draw_key: str
    words: tuple[str, ...] = ()

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(map(_ARM_NAME, self.arms))


class ArmScore(NamedTuple):
    """A policy's view of one eligible arm for one request (a NamedTuple for the reason
    given at Arm: one per eligible model per request)."""

    model: str
    expected_quality: float
    expected_cost_usd: float
    exploration_bonus: float
    score: float
    probability: float


_SCORE = operator.attrgetter("score")


@dataclass(frozen=True)
class Decision:
    """The arm a policy chose, with the exact probability of that choice and every arm's score."""

    model: str
    probability: float
    scores: tuple[ArmScore, ...]

    def ranked(self) -> tuple[str, ...]:
        """Eligible models ordered best first by score (ties keep the arm order)."""
        # A stable sort, reversed, keeps tied arms in their order.
        return tuple(s.model for s in sorted(self.scores, key=_SCORE, reverse=True))


@dataclass(frozen=True)
class Outcome:
    """What the call of the chosen model achieved."""

    quality: float
    cost_usd: float
    latency_ms: float | None = None

    def reward(self, cost_weight: float) -> float:
        return reward(self.quality, self.cost_usd, cost_weight)


def reward(quality: float, cost_usd: float, cost_weight: float) -> float:
    """reward = quality − λ·cost_usd, as docs/api.md defines it."""
    return quality - cost_weight * cost_usd


@dataclass(frozen=True)
class Alarm:
    """A change of a model's rewards flagged by a policy's change detection
    (policies/drift.py): the task type whose stream flagged it ("*": the model's whole
    traffic), whether rewards went "down" or "up", and the policy's outcomes learned then."""

    model: str
    task: str
    direction: str
    at: int

    def entry(self) -> dict[str, str | int]:
        return {"model": self.model, "task": self.task, "direction": self.direction, "at": self.at}


@dataclass(frozen=True)
class DriftStatus:
    """What a policy knows of a model's changes: how many were flagged, the last one, and for
    how many more outcomes learned the model's exploration stays raised (0: none)."""

    alarms: int
    last: Alarm | None
    boost_left: int


class Policy(Protocol):
    """Chooses an arm among the eligible ones and learns from the outcome of its choice."""

    name: str

    @property
    def reads_words(self) -> bool:
        """Whether choose and learn read ``Context.words``."""
        ...

    @property
    def version(self) -> int:
        """How many outcomes the policy has learned from; names its state in logs."""
        ...

    def choose(self, context: Context) -> Decision: ...

    def learn(
        self,
        context: Context,
        model: str,
        outcome: Outcome,
        *,
        probability: float,
        replaces: Outcome | None = None,
    ) -> None:
        """Learns the outcome of ``model``, chosen with ``probability`` (the logged propensity,
        which importance-weighting learners need).

        ``replaces``: this decision was learned before with that outcome, which ``outcome``
        now supersedes (an attempt of an escalation chain, once the chain grew; see
        escalation.py). A learner that can take the old outcome back does; one that cannot
        learns the new one on top."""
        ...

    def dumps(self) -> bytes: ...


@dataclass(frozen=True)
class PolicySpec:
    """A policy's registry name and its parameters, as configured."""

    name: str
    params: Mapping[str, float | int | str | Sequence[str]] = field(default_factory=dict)

    @property
    def section(self) -> str:
        """The configuration section, [policies.SECTION], that holds its parameters: the
        registry name (``fixed:MODEL`` reads ``fixed``)."""
        return self.name.split(":", 1)[0]

    @classmethod
    def configured(
        cls, name: str, sections: Mapping[str, Mapping[str, float | int | str | Sequence[str]]]
    ) -> PolicySpec:
        """The policy ``name`` with the parameters of its section in ``sections``, if any."""
        return cls(name, dict(sections.get(cls(name).section, {})))

    def key(self) -> str:
        """A stable text identity, so a snapshot is only restored into the same configuration."""
        items = ",".join(f"{k}={self.params[k]!r}" for k in sorted(self.params))
        return f"{self.name}({items})"


def stable_hash(text: str, *, digest_size: int = 8) -> int:
    """A hash that is the same in every process (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=digest_size).digest(), "big")


class _EntropyPool:
    """``os.urandom`` read 4 KiB at a time.

    The system call lets go of the interpreter lock, and a busy thread (PostgreSQL's decision
    writer) may then hold it for a switch interval (5 ms) before the event loop gets it back:
    one call per 400 ids instead of one per /route. Each process (a forked one too) reads its
    own bytes, never a parent's.
    """

    def __init__(self, chunk: int = 4096) -> None:
        self._chunk = chunk
        self._lock = threading.Lock()
        self._buffer = b""
        self._taken = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._buffer, self._taken = b"", 0

    def take(self, size: int) -> bytes:
        with self._lock:
            if self._taken + size > len(self._buffer):
                self._buffer, self._taken = os.urandom(max(self._chunk, size)), 0
            start, self._taken = self._taken, self._taken + size
            return self._buffer[start : self._taken]


_ENTROPY = _EntropyPool()


def time_ordered_uuid() -> str:
    """A version-7 UUID (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Decision ids are the decision log's primary key: ids that grow with time append to the
    end of its index instead of touching a random page per insert, which halves what each
    commit writes (measured on SQLite's write-ahead log).
    """
    millis = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(_ENTROPY.take(10), "big")
    value = (
        (millis & (1 << 48) - 1) << 80
        | 0x7 << 76
        | (random_bits >> 62 & 0xFFF) << 64
        | 0b10 << 62
        | random_bits & (1 << 62) - 1
    )
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def stable_uniform(*parts: str) -> float:
    """A number in [0, 1) determined by the parts alone: seeded, reproducible draws."""
    return stable_hash("\x1f".join(parts)) / 2.0**64


class DomainError(Exception):
    """Base of the errors the use cases raise; api.py maps each kind to an HTTP status."""


class InvalidInput(DomainError):
    """Input that passed the schema but breaks a rule known only to the service."""

    def __init__(self, field_path: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.field_path = field_path
        self.message = message


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    """The request would replace something that exists (a model of the same name)."""


class NoEligibleModel(DomainError):
    def __init__(self, reasons: Mapping[str, str]) -> None:
        super().__init__("no model is eligible for this request")
        self.reasons = dict(reasons)


class StorageUnavailable(DomainError):
    pass


class Forbidden(DomainError):
    """The caller's key is valid but its role may not do this."""

    def __init__(self, action: str, required_role: str, role: str) -> None:
        super().__init__(f"{action} needs the {required_role} role; this key's role is {role}")
        self.required_role = required_role


class ModelNotAllowed(DomainError):
    """The caller named a model its rules, its tier or the pool keep from it (``reason``)."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"the model {model!r} is not allowed for this request: {reason}")
        self.model = model
        self.reason = reason
