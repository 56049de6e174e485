"""Prompts and pool the benchmarks share: short requests of mixed tasks on the default pool."""

from __future__ import annotations

from bandit_router.core import Arm, Features
from bandit_router.eligibility import Constraints, split_eligible
from bandit_router.settings import load_config

PROMPTS = [
    "What is the capital of Australia?",
    "Write a Python function that returns the n-th Fibonacci number using memoization.",
    "Summarize the following paragraph in two sentences: The committee met on Tuesday to "
    "discuss the budget. After a long debate, it approved a 3% increase for schools.",
    "Classify the sentiment of this review as positive or negative: 'The food was cold.'",
    "A shop sells pens at $3 each. If Maria buys 7 pens and pays with $50, what is her change?",
    "Write a short poem about the sea at night.",
    "Which of these is a mammal? A) shark B) dolphin C) trout D) octopus",
    "hi! how are you doing today?",
]

_POOL = load_config().models


def pool_arms(features: Features) -> tuple[Arm, ...]:
    """The default pool's models, each priced for the featurized prompt, as /route has them."""
    return split_eligible(
        _POOL,
        prompt_tokens=float(features["tokens"]),
        expected_output_tokens=400,
        candidates=None,
        constraints=Constraints(),
    ).eligible
