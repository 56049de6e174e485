"""The matching code of the text rules: a sample read once, gated patterns, alternations.

A rule's regular expression is written for people to read; the code here makes it cheap. The
prompt is lowercased once (``Sample``), and every pattern carries a gate (substrings, whole
words or a digit that every match needs), so a prompt searches only the patterns whose gate it
opens (``GateIndex``). The gates never change an answer; `tests/test_features.py` checks each
one against its plain regex. The rules themselves, and the lexicons they read, are in
``text_rules``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_I = re.IGNORECASE
_WORD = re.compile(r"\w+")
# In ASCII, \w is a letter, a digit or "_": every other byte becomes a space, and splitting
# on spaces then gives the words \w+ finds.
_ASCII_NON_WORD_TO_SPACE = (
    bytes(c if chr(c).isalnum() or c == ord("_") else ord(" ") for c in range(128)) + b" " * 128
)


class Sample:
    """The text a rule reads, lowercased once: case-insensitive rules match the lowercased
    text with lowercased patterns, which Python's regex engine runs about twice as fast as
    IGNORECASE. Whether options are listed is asked by several rules, so it is kept."""

    __slots__ = ("_digit", "_open", "_options", "_word_set", "_words", "low", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.low = text.lower()
        self._open: set[int] | None = None
        self._options: bool | None = None
        self._digit: bool | None = None
        self._words: list[str] | None = None
        self._word_set: frozenset[str] | None = None

    @property
    def words(self) -> list[str]:
        """The lowercased word tokens (\\w+), in order."""
        if self._words is None:
            low = self.low
            # Most prompts are ASCII: three C passes (encode, translate, split) take a
            # quarter of the time the regex needs to walk the text.
            self._words = (
                low.encode("ascii").translate(_ASCII_NON_WORD_TO_SPACE).decode("ascii").split()
                if low.isascii()
                else _WORD.findall(low)
            )
        return self._words

    @property
    def has_digit(self) -> bool:
        """Any character that \\d matches, Unicode digits included."""
        if self._digit is None:
            self._digit = _ANY_DIGIT.search(self.text) is not None
        return self._digit

    @property
    def word_set(self) -> frozenset[str]:
        if self._word_set is None:
            self._word_set = frozenset(self.words)
        return self._word_set

    @property
    def open_patterns(self) -> set[int]:
        """Indexes of the patterns whose gate lets them search this text (see GateIndex)."""
        if self._open is None:
            self._open = _GATES.index().open(self)
        return self._open

    def has_options(self) -> bool:
        if self._options is None:
            self._options = _has_options(self.text, self.low)
        return self._options


SampleTest = Callable[[Sample], bool]
"""A rule's condition on a sample."""
_UPPER_OUTSIDE_ESCAPES = re.compile(r"\\.|[A-Z]")
_ANY_DIGIT = re.compile(r"\d")


def _lowercase_pattern(pattern: str) -> str:
    """Lowercases a pattern's letters but not its escapes (\\S is not \\s)."""
    return _UPPER_OUTSIDE_ESCAPES.sub(
        lambda m: m.group() if m.group().startswith("\\") else m.group().lower(), pattern
    )


class Pattern:
    """A rule's regular expression, with the literal needles that every match contains.

    A substring test is a fast C scan, a regex search an interpreter walk over every
    position: testing the needles first skips most searches on most prompts. The needles
    only ever skip searches that could not match (`tests/test_features.py` checks this for
    every pattern), so the answer is the regex's own.
    """

    __slots__ = ("index", "lowered", "needles", "needs_digit", "regex", "words")

    def __init__(
        self,
        pattern: str,
        flags: int,
        needles: Sequence[str],
        words: Sequence[str] = (),
        needs_digit: bool = False,
    ) -> None:
        self.lowered = bool(flags & re.IGNORECASE)
        if self.lowered:
            pattern, flags = _lowercase_pattern(pattern), flags & ~re.IGNORECASE
            assert all(n == n.lower() for n in [*needles, *words]), "needles of a lowered rule"
        assert (bool(needles) + bool(words) + needs_digit) <= 1, "one kind of gate per pattern"
        self.needs_digit = needs_digit
        self.regex = re.compile(pattern, flags)
        self.needles = tuple(needles)
        self.words = frozenset(words)
        self.index = len(PATTERNS)
        PATTERNS.append(self)
        _GATES.forget()

    def search(self, sample: Sample) -> bool:
        """The regex alone, for a caller that knows the gate is open."""
        return self.regex.search(sample.low if self.lowered else sample.text) is not None

    def __call__(self, sample: Sample) -> bool:
        return self.index in sample.open_patterns and self.search(sample)


PATTERNS: list[Pattern] = []
"""Every rule's pattern, so a test can check each one's needles."""


class GateIndex:
    """Every pattern's gate, inverted: one pass over the needles and one set intersection
    with the prompt's words open all the patterns worth searching, instead of a test per
    pattern (a prompt meets about forty patterns and opens few)."""

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        self.always = frozenset(p.index for p in patterns if self._ungated(p))
        self.low_needles: dict[str, list[int]] = {}
        self.text_needles: dict[str, list[int]] = {}
        self.by_word: dict[str, list[int]] = {}
        self.digit = tuple(p.index for p in patterns if p.needs_digit)
        for p in patterns:
            needles = self.low_needles if p.lowered else self.text_needles
            for needle in p.needles:
                needles.setdefault(needle, []).append(p.index)
            for word in p.words:
                self.by_word.setdefault(word, []).append(p.index)
        self.words = frozenset(self.by_word)
        self._low_items = tuple(self.low_needles.items())
        self._text_items = tuple(self.text_needles.items())

    @staticmethod
    def _ungated(pattern: Pattern) -> bool:
        return not (pattern.needles or pattern.words or pattern.needs_digit)

    def open(self, sample: Sample) -> set[int]:
        opened = set(self.always)
        low, text = sample.low, sample.text
        # One comprehension per text, then one update: a needle costs a C substring scan and
        # no method call of its own (about twice as fast as a loop that updates per needle).
        opened.update(
            *[owners for needle, owners in self._low_items if needle in low],
            *[owners for needle, owners in self._text_items if needle in text],
            *[self.by_word[word] for word in self.words.intersection(sample.word_set)],
        )
        if sample.has_digit:
            opened.update(self.digit)
        return opened


class _LazyGateIndex:
    """The GateIndex of every registered pattern, built at the first sample that asks.

    The rule tables register their patterns when ``text_rules`` is imported, after this
    module: building the index at first use, and again after any later registration (a
    test's pattern), keeps it over every pattern without an order between the modules."""

    def __init__(self) -> None:
        self._index: GateIndex | None = None

    def forget(self) -> None:
        self._index = None

    def index(self) -> GateIndex:
        index = self._index
        if index is None:
            index = self._index = GateIndex(PATTERNS)
        return index


_GATES = _LazyGateIndex()


def each(words: str) -> tuple[str, ...]:
    """A gate's words or needles, written as one space-separated string."""
    return tuple(words.split())


def found(
    pattern: str,
    flags: int = _I,
    needles: Sequence[str] = (),
    words: Sequence[str] = (),
    needs_digit: bool = False,
) -> Pattern:
    """A rule's pattern, gated by substrings (`needles`), by whole words (`words`) or by the
    presence of a digit, each a condition that every match of the pattern meets."""
    return Pattern(pattern, flags, needles, words, needs_digit)


class AnyOf:
    """An alternation split in parts, so that each part is skipped on its own gate: only the
    parts the sample opened are searched (one set intersection finds them)."""

    __slots__ = ("indexes", "parts")

    def __init__(self, *parts: Pattern) -> None:
        self.parts = {part.index: part for part in parts}
        self.indexes = frozenset(self.parts)

    def count(self, sample: Sample) -> int:
        """How many parts match."""
        opened = sample.open_patterns
        if opened.isdisjoint(self.indexes):  # most rules, on most prompts: no call per part
            return 0
        parts = self.parts
        return sum([parts[i].search(sample) for i in self.indexes.intersection(opened)])

    def __call__(self, sample: Sample) -> bool:
        opened = sample.open_patterns
        if opened.isdisjoint(self.indexes):
            return False
        parts = self.parts
        return any(parts[i].search(sample) for i in self.indexes.intersection(opened))


def both(first: SampleTest, second: SampleTest) -> SampleTest:
    return lambda sample: first(sample) and second(sample)


def options_listed(sample: Sample) -> bool:
    return sample.has_options()


# Answer options: "A) x", "(b) x", a line starting "C. x", and "Option 1: x" / "Choice 2".
# Bare "1." or "1)" is not an option: numbered lists of steps are far more common.
_OPTION_LABELS = (
    re.compile(r"(?<!\S)\(?([A-Ha-h])\)(?!\S)"),
    re.compile(r"^[ \t]*([A-Ha-h])\.[ \t]", re.MULTILINE),
    re.compile(r"\b(?:option|choice)[ \t]*([1-8A-Ha-h])\b", _I),
)


def _has_options(text: str, low: str | None = None) -> bool:
    """Options are real when both the first and the second label appear ("A" and "B").

    Each label pattern needs a character or word that a substring test rules out first.
    """
    labels: set[str] = set()
    if ")" in text:
        labels.update(m.group(1).lower() for m in _OPTION_LABELS[0].finditer(text))
    if "." in text:
        labels.update(m.group(1).lower() for m in _OPTION_LABELS[1].finditer(text))
    low = text.lower() if low is None else low
    if "option" in low or "choice" in low:
        labels.update(m.group(1).lower() for m in _OPTION_LABELS[2].finditer(text))
    return {"a", "b"} <= labels or {"1", "2"} <= labels
