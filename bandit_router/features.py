"""Context features of a prompt, as the bandit policies see them.

Every numeric feature is a float in a small bounded range, because linear policies (LinUCB)
take them as they are: one unbounded feature would dominate the others and the confidence
ellipsoid. Ranges (of ``featurize``'s output):

    log_tokens        [0, 1.5]   log1p(tokens) / 10, capped (1.5 is about 3M tokens)
    type_token_ratio  [0, 1]     distinct words / words
    digit_share       [0, 1]     digits / characters
    symbol_share      [0, 1]     characters neither alphanumeric nor whitespace / characters
    uppercase_share   [0, 1]     uppercase letters / letters
    code_markers      [0, 1]     how many kinds of source-code syntax appear, saturating at 4
    math_markers      [0, 1]     how many kinds of math notation appear, saturating at 3
    multiple_choice   {0, 1}     the prompt lists answer options
    questions         [0, 1]     min(count of "?", 5) / 5
    lines             [0, 1.5]   log1p(lines) / 5, capped
    avg_word_len      [0, 1.5]   mean word length / 10, capped

The density features and the task type (inferred by the rules of ``text_rules``) read at
most the first 16,000 and the last 4,000 characters, which keeps a megabyte prompt cheap;
``tokens``, ``questions`` and ``lines`` read the whole text.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Collection, Mapping, Sequence
from itertools import islice

import numpy as np
import numpy.typing as npt

from bandit_router.core import ESCALATION_FEATURES, Features, FeatureValue, stable_hash
from bandit_router.text_rules import (
    CODE_MARKERS,
    MATH_MARKERS,
    TASK_TYPES,
    Sample,
    infer,
    infer_task_type,
    sample_text,
)

_WORD = re.compile(r"\w+")

__all__ = [
    "NUMERIC_FEATURES",
    "TASK_TYPES",
    "FeatureEncoder",
    "configured_features",
    "features_read",
    "featurize",
    "infer_task_type",
]

NUMERIC_FEATURES: tuple[str, ...] = (
    "log_tokens",
    "type_token_ratio",
    "digit_share",
    "symbol_share",
    "uppercase_share",
    "code_markers",
    "math_markers",
    "multiple_choice",
    "questions",
    "lines",
    "avg_word_len",
)


def estimate_tokens(text: str) -> int:
    """The larger of UTF-8 bytes / 4 and words * 4/3, rounded to nearest, at least 1.

    The two agree on English prose (about 4 characters or 0.75 words per token). Bytes catch
    text with few spaces (code, CJK: byte-level tokenizers spend a token on 1-3 bytes there),
    words catch many short words. Taking the larger errs towards over-estimating cost.
    """
    if not text:
        return 0
    estimate = max(len(text.encode("utf-8", "surrogatepass")) / 4, len(text.split()) * 4 / 3)
    return max(1, math.floor(estimate + 0.5))


def text_of_messages(messages: Sequence[tuple[str, str]]) -> str:
    """Roles carry no signal about the task, and tagging them would skew the text features."""
    return "\n".join(content for _role, content in messages)


PROMPT_WORDS = 128
"""How many of a prompt's first words a word-reading policy sees (``Context.words``)."""


def prompt_words(text: str, limit: int = PROMPT_WORDS) -> tuple[str, ...]:
    """Lower-cased word tokens; scanning stops at ``limit`` words, so a huge prompt costs
    no more than a short one."""
    return tuple(m.group().lower() for m in islice(_WORD.finditer(text), max(limit, 0)))


_ASCII_LETTERS = bytes(range(65, 91)) + bytes(range(97, 123))
_ASCII_UPPER = bytes(range(65, 91))
_ASCII_DIGITS = b"0123456789"
# str.isspace() is true for these ASCII characters, \x1c-\x1f included.
_ASCII_SPACES = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


def _char_counts(text: str) -> tuple[int, int, int, int]:
    """Letters, digits, whitespace and uppercase letters, as str.isalpha() & co. count them.

    Most prompts are ASCII: counting what bytes.translate deletes is one C pass per class,
    about ten times faster than mapping a str method over every character.
    """
    if text.isascii():
        raw = text.encode("ascii")
        n = len(raw)
        return (
            n - len(raw.translate(None, _ASCII_LETTERS)),
            n - len(raw.translate(None, _ASCII_DIGITS)),
            n - len(raw.translate(None, _ASCII_SPACES)),
            n - len(raw.translate(None, _ASCII_UPPER)),
        )
    return (
        sum(map(str.isalpha, text)),
        sum(map(str.isdigit, text)),
        sum(map(str.isspace, text)),
        sum(map(str.isupper, text)),
    )


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def featurize(
    text: str,
    task_type: str | None = None,
    extra: Mapping[str, FeatureValue] | None = None,
) -> dict[str, FeatureValue]:
    """A caller who knows the task passes it, which beats any inference; an empty string
    counts as not knowing. Extras go under ``x.`` so they can never shadow a built-in name.
    """
    read = Sample(sample_text(text))
    sample = read.text
    given = task_type.strip().lower() if task_type is not None else ""
    tokens = estimate_tokens(text)
    words = read.words
    n = len(sample)
    letters, digits, spaces, upper = _char_counts(sample)
    # isalnum is isalpha or isdecimal/isdigit/isnumeric; the last differs from isdigit only
    # outside ASCII (e.g. "½"), where the exact count is taken.
    alnum = letters + digits if sample.isascii() else sum(map(str.isalnum, sample))
    lines = text.count("\n") + 1 if text else 0
    features: dict[str, FeatureValue] = {
        "task_type": given or infer(read),
        "tokens": float(tokens),
        "log_tokens": min(math.log1p(tokens) / 10, 1.5),
        "type_token_ratio": _share(len(read.word_set), len(words)),
        "digit_share": _share(digits, n),
        "symbol_share": _share(n - alnum - spaces, n),
        "uppercase_share": _share(upper, letters),
        "code_markers": min(CODE_MARKERS.count(read) / 4, 1.0),
        "math_markers": min(MATH_MARKERS.count(read) / 3, 1.0),
        "multiple_choice": 1.0 if read.has_options() else 0.0,
        "questions": min(text.count("?"), 5) / 5,
        "lines": min(math.log1p(lines) / 5, 1.5),
        "avg_word_len": min(_share(sum(map(len, words)), len(words)) / 10, 1.5),
    }
    for key, value in (extra or {}).items():
        features[f"x.{key}"] = value if isinstance(value, str) else float(value)
    return features


@functools.lru_cache(maxsize=8192)
def _hashed(token: str, dim: int) -> tuple[int, float]:
    """Slot from the low bits, sign from the top bit, so collisions cancel on average."""
    h = stable_hash(token)
    return h % dim, -1.0 if h >> 63 else 1.0


def features_read(features: Collection[str] | None) -> frozenset[str] | None:
    """What a policy given ``features`` reads of a context: those names and an escalation's
    (``ESCALATION_FEATURES``), which a policy serving escalations always needs; None, every
    feature, when it was given none. A policy then ignores features that carry no signal for
    its traffic instead of paying their variance."""
    if features is None:
        return None
    if isinstance(features, str) or not all(isinstance(f, str) and f for f in features):
        raise ValueError("features must be a list of feature names")
    return frozenset(features) | frozenset(ESCALATION_FEATURES)


def configured_features(read: frozenset[str] | None) -> tuple[str, ...] | None:
    """The ``features`` that give ``read`` (sorted, without the escalation ones), for a
    policy's saved parameters."""
    return None if read is None else tuple(sorted(read - frozenset(ESCALATION_FEATURES)))


class FeatureEncoder:
    """Dense layout for linear policies, fixed by ``hashed_dim`` alone.

    Slot 0 is a bias of 1.0; then one slot per ``NUMERIC_FEATURES`` name (missing -> 0);
    then one-hot ``task_type`` over ``TASK_TYPES`` plus an "other task" slot (no task_type at
    all sets none); then ``hashed_dim`` signed hashed slots for every other key: a string
    value hashes ``key=value`` to +-1, a number hashes ``key`` to +-value clipped to
    [-10, 10]. ``tokens`` is skipped (``log_tokens`` carries it) and non-finite numbers
    count as 0, since one NaN would poison a policy's matrices for good.

    ``features``, when given, names the only context features encoded (``features_read``).
    """

    def __init__(self, hashed_dim: int = 16, features: Collection[str] | None = None) -> None:
        if hashed_dim < 0:
            raise ValueError(f"hashed_dim must be >= 0, got {hashed_dim}")
        self._hashed_dim = hashed_dim
        self._read = features_read(features)
        self._numeric = {name: 1 + i for i, name in enumerate(NUMERIC_FEATURES)}
        first_task = 1 + len(NUMERIC_FEATURES)
        self._task = {name: first_task + i for i, name in enumerate(TASK_TYPES)}
        self._other_task = first_task + len(TASK_TYPES)
        self._hash_start = self._other_task + 1

    @property
    def hashed_dim(self) -> int:
        return self._hashed_dim

    @property
    def features(self) -> tuple[str, ...] | None:
        """The feature names read besides the escalation ones, sorted; None: every one."""
        return configured_features(self._read)

    @property
    def dim(self) -> int:
        return self._hash_start + self._hashed_dim

    def encode(self, features: Features) -> npt.NDArray[np.float64]:
        vector = np.zeros(self.dim, dtype=np.float64)
        vector[0] = 1.0
        read = self._read
        for key, value in features.items():
            if key == "tokens" or (read is not None and key not in read):
                continue
            if isinstance(value, str):
                if key == "task_type":
                    vector[self._task.get(value, self._other_task)] = 1.0
                elif self._hashed_dim:
                    slot, sign = _hashed(f"{key}={value}", self._hashed_dim)
                    vector[self._hash_start + slot] += sign
                continue
            number = float(value) if math.isfinite(value) else 0.0
            slot_of_name = self._numeric.get(key)
            if slot_of_name is not None:
                vector[slot_of_name] = number
            elif self._hashed_dim:
                slot, sign = _hashed(key, self._hashed_dim)
                vector[self._hash_start + slot] += sign * min(max(number, -10.0), 10.0)
        return vector
