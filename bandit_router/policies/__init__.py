"""The one registry that builds policies by name; heavy engines are imported only from here.

A spec name is a registered policy (`linucb`, `vw`, `thompson`, `random`, `cheapest`) or
`fixed:MODEL`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bandit_router.core import Policy, PolicySpec


def _linucb() -> tuple[Callable[..., Policy], Callable[[bytes], Policy]]:
    from bandit_router.policies.linucb import LinUCB

    return LinUCB, LinUCB.loads


def _vw() -> tuple[Callable[..., Policy], Callable[[bytes], Policy]]:
    from bandit_router.policies.vw import VowpalWabbit

    return VowpalWabbit, VowpalWabbit.loads


def _thompson() -> tuple[Callable[..., Policy], Callable[[bytes], Policy]]:
    from bandit_router.policies.thompson import ThompsonCascade

    return ThompsonCascade, ThompsonCascade.loads


def _random() -> tuple[Callable[..., Policy], Callable[[bytes], Policy]]:
    from bandit_router.policies.baselines import RandomPolicy

    return RandomPolicy, RandomPolicy.loads


def _cheapest() -> tuple[Callable[..., Policy], Callable[[bytes], Policy]]:
    from bandit_router.policies.baselines import CheapestPolicy

    return CheapestPolicy, CheapestPolicy.loads


def _fixed() -> tuple[Callable[..., Policy], Callable[[bytes], Policy]]:
    from bandit_router.policies.baselines import FixedPolicy

    return FixedPolicy, FixedPolicy.loads


# Each entry is lazy so that an optional engine is imported only when a policy asks for it.
_REGISTRY: Mapping[str, Callable[[], tuple[Callable[..., Policy], Callable[[bytes], Policy]]]] = {
    "linucb": _linucb,
    "vw": _vw,
    "thompson": _thompson,
    "random": _random,
    "cheapest": _cheapest,
    "fixed": _fixed,
}

LEARNING_POLICIES = ("linucb", "vw", "thompson")
"""Registered policies that learn from bandit feedback (the simulator replays each of them)."""

PLANNING_POLICIES = ("thompson",)
"""Learning policies that plan escalation chains when told how many attempts the client
makes (their ``plan_attempts`` parameter); the cascade replay tells them."""


class UnknownPolicy(ValueError):
    pass


def _entry(name: str) -> tuple[str, dict[str, Any]]:
    """Registry key and the parameters a name implies (`fixed:MODEL` names its model)."""
    if name.startswith("fixed:"):
        model = name.removeprefix("fixed:")
        if not model:
            raise UnknownPolicy("fixed: needs a model name, as in fixed:gpt-4o")
        return "fixed", {"model": model}
    if name not in _REGISTRY or name == "fixed":
        known = ", ".join([*sorted(set(_REGISTRY) - {"fixed"}), "fixed:MODEL"])
        raise UnknownPolicy(f"unknown policy {name!r}; known: {known}")
    return name, {}


def registered() -> tuple[str, ...]:
    return tuple(sorted(set(_REGISTRY) - {"fixed"}))


def build(spec: PolicySpec) -> Policy:
    """A fresh policy for the spec; raises UnknownPolicy or ValueError for bad parameters."""
    key, implied = _entry(spec.name)
    factory, _ = _REGISTRY[key]()
    try:
        return factory(**{**spec.params, **implied})
    except TypeError as error:
        raise ValueError(f"bad parameters for policy {spec.name!r}: {error}") from error


def loads(name: str, data: bytes) -> Policy:
    """A policy restored from the bytes its dumps() wrote."""
    key, _ = _entry(name)
    _, loader = _REGISTRY[key]()
    return loader(data)
