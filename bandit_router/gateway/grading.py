"""The grader's values and pure parts: its options, which decisions it grades, the judge's
prompt (a rubric template) and the reading of the judge's answer as a quality in [0, 1]."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bandit_router.gateway.options import Upstream

GRADER_SOURCE = "grader"
"""The feedback source of the grader's grades, and the budget scope of its calls."""

DEFAULT_RUBRIC = """\
You are grading an AI assistant's answer to a user's request.
Judge whether the answer is correct, complete, relevant to the request and clearly written.
An answer that is wrong, off-topic or refuses a reasonable request scores low.

<request>
{prompt}
</request>

<answer>
{answer}
</answer>

Reply with one line and nothing else: "Score: N", where N is an integer from 1 (useless or \
wrong) to 10 (excellent)."""
"""The judge's prompt: ``{prompt}`` is the conversation (one ``role: text`` line per message),
``{answer}`` the answer graded."""


@dataclass(frozen=True)
class GraderOptions:
    model: str
    """The judge: a pool model's name, or the grader's own upstream's label."""
    upstream: Upstream
    share: float = 0.1
    rubric: str = DEFAULT_RUBRIC
    concurrency: int = 2
    input_price_per_mtok: float | None = None
    """The judge's prices when it is not a pool model (a pool model's own prices otherwise)."""
    output_price_per_mtok: float | None = None
    lease_s: float = 120.0
    """How long a worker holds a claimed job: a killed worker's jobs are retaken after it."""
    max_tries: int = 3
    retry_backoff_s: float = 5.0
    """Before the second try; doubled before each next one."""
    poll_s: float = 1.0
    """How often an idle worker looks for jobs other processes queued."""
    max_chars: int = 20_000
    """The longest request and answer text sent to the judge (each is cut beyond it)."""


def sampled(decision_id: str, share: float) -> bool:
    """Whether the grader grades this decision: a stable hash of its id (blake2b) below the
    share, so every process agrees and the share holds over any run of decisions."""
    if share >= 1.0:
        return True
    if share <= 0.0:
        return False
    digest = hashlib.blake2b(decision_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2**64


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content') or ''}" for m in messages)


def judge_body(
    options: GraderOptions, messages: Sequence[Mapping[str, Any]], answer: str
) -> dict[str, Any]:
    """The judge's chat request. The placeholders are filled in one pass (not str.format,
    nor one replace after the other): the texts' own braces, ``{answer}`` included, stay as
    they are."""
    limit = options.max_chars
    texts = {"prompt": prompt_text(messages)[:limit], "answer": answer[:limit]}
    content = _PLACEHOLDER.sub(lambda found: texts[found.group(1)], options.rubric)
    return {"model": options.upstream.upstream_model,
            "messages": [{"role": "user", "content": content}]}  # fmt: skip


_PLACEHOLDER = re.compile(r"\{(prompt|answer)\}")
_LABELLED = re.compile(
    r"(?:score|rating|grade)[\"*]*\s*(?:[:=]|is)?\s*[\"*]*\s*(\d+(?:\.\d+)?)\s*(/\s*10\b)?",
    re.IGNORECASE,
)
_BARE = re.compile(r"^\s*\**\s*(\d+(?:\.\d+)?)\s*(/\s*10)?\s*\**\s*\.?\s*$")
_OUT_OF_TEN = re.compile(r"\b(\d+(?:\.\d+)?)\s*(/)\s*10\b")


def parse_grade(text: str | None) -> float | None:
    """The judge's answer as a quality in [0, 1], or None when it says no usable number.

    Read: ``Score: N`` (also ``rating``, ``grade``, JSON's ``"score": N``), ``N/10``, or an
    answer that is a number alone. A number written with a decimal point in [0, 1] is a
    quality as it is (``0.85``); otherwise a number from 1 to 10 is a score on the rubric's
    scale, mapped linearly so that 1 → 0 and 10 → 1. Anything else (no number, 0 as an
    integer, above 10) is unusable: better no grade than a wrong one.
    """
    if not text:
        return None
    found = _LABELLED.search(text) or _BARE.match(text) or _OUT_OF_TEN.search(text)
    if found is None:
        return None
    number, out_of_ten = found.group(1), found.group(2) is not None
    value = float(number)
    if "." in number and not out_of_ten and 0.0 <= value <= 1.0:
        return value
    if 1.0 <= value <= 10.0:
        return (value - 1.0) / 9.0
    return None
