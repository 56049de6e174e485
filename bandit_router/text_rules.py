"""Task type by an ordered table of readable rules, and the code and math markers.

Each rule is a regular expression written for people to read; `infer_task_type` returns the
task of the first rule that matches. The rules are evaluated lazily and cheaply: the prompt is
lowercased once, and every pattern carries a gate (substrings, whole words or a digit that
every match needs), so a prompt searches only the patterns whose gate it opens. The gates
never change an answer; `tests/test_features.py` checks each one against its plain regex.
Every regular expression here is linear: no nested quantifiers, and each variable-length piece
is either anchored to a word or line start or bounded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

TASK_TYPES: tuple[str, ...] = (
    "qa",
    "reasoning",
    "code",
    "classification",
    "summarization",
    "creative",
    "chat",
)

_HEAD, _TAIL = 16_000, 4_000
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
            self._open = GATES.open(self)
        return self._open

    def has_options(self) -> bool:
        if self._options is None:
            self._options = _has_options(self.text, self.low)
        return self._options


_Test = Callable[[Sample], bool]
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


def _w(words: str) -> tuple[str, ...]:
    """A gate's words or needles, written as one space-separated string."""
    return tuple(words.split())


def _found(
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


def _both(first: _Test, second: _Test) -> _Test:
    return lambda sample: first(sample) and second(sample)


def _options_listed(sample: Sample) -> bool:
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


_LANGS = (
    r"python|javascript|typescript|java|c\+\+|c#|golang|rust|ruby|php|kotlin|swift|scala"
    r"|haskell|sql|bash|powershell|html|css|react|node\.?js|pandas|numpy|django"
)
# A language name always stands as a word of its own ("c" for c++ and c#, "node" or "nodejs").
_LANG_WORDS = (
    "python", "javascript", "typescript", "java", "c", "golang", "rust", "ruby", "php",
    "kotlin", "swift", "scala", "haskell", "sql", "bash", "powershell", "html", "css", "react",
    "node", "nodejs", "pandas", "numpy", "django",
)  # fmt: skip
_CODE_FLAGS = _I | re.MULTILINE
_CODE = AnyOf(
    _found(r"```", _CODE_FLAGS, ["```"]),
    _found(r"\bdef [A-Za-z_]\w*\s*\(", _CODE_FLAGS, ["def "]),
    _found(r"#include\b", _CODE_FLAGS, ["#include"]),
    _found(r"^[ \t]*(?:import [\w.]+|from [\w.]+ import )", _CODE_FLAGS, ["import "]),
    _found(r"\{[ \t]*\n|^[ \t]*\}", _CODE_FLAGS, ["{", "}"]),
    _found(r"=>", _CODE_FLAGS, ["=>"]),
    _found(r"\bconsole\.log|System\.out", _CODE_FLAGS, ["console.log", "system.out"]),
    _found(
        r"Traceback \(most recent|\b[A-Z][a-z]+(?:Error|Exception)\b",
        _CODE_FLAGS,
        ["traceback (", "error", "exception"],
    ),
    _found(
        r"\b(?:in|using|with) (?:" + _LANGS + r")\b"
        r"|\b(?:" + _LANGS + r") (?:function|script|code|program|class|snippet|error|library"
        r"|package|module|query)\b",
        _CODE_FLAGS,
        words=_LANG_WORDS,
    ),
    _found(
        r"\b(?:write|implement|create|build|fix|debug|refactor|optimi[sz]e|complete|convert"
        r"|port|generate)\b[^.?!\n]{0,60}\b(?:function|method|algorithm|regex|regular expression"
        r"|unit tests?|snippet|endpoint|(?:sql|database) query|code(?! of conduct)"
        r"|script (?:to|that)|program (?:that|to|which)|class (?:that|to|for|called|named))\b",
        _CODE_FLAGS,
        words=_w(
            "write implement create build fix debug refactor optimise optimize complete "
            "convert port generate"
        ),
    ),
    _found(
        r"\b(?:this|my|the following|the above|the below) (?:code|function|script|snippet"
        r"|regex)\b",
        _CODE_FLAGS,
        words=_w("code function script snippet regex"),
    ),
    _found(
        r"\b(?:compiler?|segfault|stack trace|syntax error|pip install|npm install"
        r"|time complexity|git (?:commit|merge|rebase|push|pull|stash|reset))\b",
        _CODE_FLAGS,
        words=_w("compile compiler segfault stack syntax pip npm time git"),
    ),
)
# Each rule below is split where its alternatives need different words, so a prompt pays for a
# search only when a word a match needs is there ("which" alone opens nothing: "which genre"
# needs "genre").
_CLASSIFICATION = AnyOf(
    _found(
        r"\b(?:classify|classification|categori[sz]e|positive or negative|sentiment analysis"
        r"|sentiment of (?:this|that|these|the following|each|my)"
        r"|positive, negative,? or neutral|spam or (?:not|ham))\b",
        words=_w("classify classification categorise categorize positive sentiment spam"),
    ),
    _found(
        r"\b(?:is|are) (?:this|it|these|the following)\b[^.?!\n]{0,40}\b(?:spam|toxic"
        r"|offensive|sarcastic|clickbait|fake news)\b",
        words=_w("spam toxic offensive sarcastic clickbait fake"),
    ),
    _found(r"\blabel (?:it|this|these|each|every|the \w+)\b", words=_w("label")),
    _found(
        r"\bwhich (?:category|class|label|genre|topic|department|intent)\b",
        words=_w("category class label genre topic department intent"),
    ),
    _found(r"\bassign (?:a|one|the) (?:label|category|tag)\b", words=_w("assign")),
    _found(r"\bdetect the (?:language|intent|emotion|tone)\b", words=_w("detect")),
)
_SUMMARIZATION = AnyOf(
    _found(
        r"\b(?:summari[sz]e|summari[sz]ing|summary|summaries|tl;? ?dr|recap|condense|synopsis"
        r"|gist)\b",
        words=_w(
            "summarise summarize summarising summarizing summary summaries tl tldr recap "
            "condense synopsis gist"
        ),
    ),
    _found(
        r"\b(?:key (?:points|takeaways)|main (?:points?|ideas?))\b",
        words=_w("points takeaways point idea ideas"),
    ),
    _found(r"\bboil (?:this|it) down\b", words=_w("boil")),
    _found(
        r"\bin (?:a few|one|two|three|four|five|\d) (?:sentences?|bullet points|bullets"
        r"|lines)\b",
        words=_w("sentence sentences bullet bullets lines"),
    ),
)
_CREATIVE = AnyOf(
    _found(
        r"\b(?:write|compose|draft|create|generate|come up with|give me|make up|craft|tell me"
        r"|brainstorm|suggest|need)\b[^.?!\n]{0,50}\b(?:poems?|haikus?|limericks?|sonnets?|ode"
        r"|verses?|rhymes?|story|stories|tale|fable|song|lyrics|rap|slogans?|taglines?|jingle"
        r"|ad copy|advert|advertisement|marketing (?:copy|email)|product description|caption"
        r"|tweet|jokes?|puns?|screenplay|script for|monologue|dialogue|essay|blog post|article"
        r"|email|letter|speech|toast|wedding vows|names? (?:ideas )?for|name ideas|riddle)\b",
        words=_w(
            "poem poems haiku haikus limerick limericks sonnet sonnets ode verse verses rhyme "
            "rhymes story stories tale fable song lyrics rap slogan slogans tagline taglines "
            "jingle ad advert advertisement marketing product caption tweet joke jokes pun "
            "puns screenplay script monologue dialogue essay blog article email letter speech "
            "toast wedding name names riddle"
        ),
    ),
    _found(
        r"\bonce upon a time\b|\bin the style of\b|\bcatchy\b",
        words=_w("once style catchy"),
    ),
)
_BLANK = _found(r"(?<!\w)_+(?!\w)", needles=_w("_"))
# Arithmetic is split by what each form needs besides a digit: "b = 3" tries every word start
# and "3 times 4" every digit, so those parts are searched only when "=" or the word is there.
_REASONING = AnyOf(
    _found(r"\d[ \t]*[+*×÷^][ \t]*\d|\d[ \t]+[-/][ \t]+\d", needs_digit=True),
    _found(r"(?<![\d.])\d+[ \t]*%[ \t]*of\b", needles=_w("%")),
    _found(
        r"\b\d+ (?:times|plus|minus|divided by|multiplied by) \d",
        words=_w("times plus minus divided multiplied"),
    ),
    _found(r"(?:\d|\b[a-z])[ \t]*=[ \t]*-?\d", needles=_w("=")),
    _found(r"\\(?:frac|sqrt|sum|int|cdot|times)\b", needles=_w("\\")),
    _found(
        r"\b(?:solve|prove|proof|equations?|integral|derivative|differentiate|simplify"
        r"|factori[sz]e|probability|theorem|prime number|divisible|remainder when|how many ways"
        r"|logic puzzle|riddle|brain teaser|next number in|syllogism|calculate|compute)\b",
        words=_w(
            "solve prove proof equation equations integral derivative differentiate simplify "
            "factorise factorize probability theorem prime divisible remainder how logic "
            "riddle brain next syllogism calculate compute"
        ),
    ),
    _found(
        r"\bif\b[^?]{0,200}\bhow (?:many|much|long|far|old|fast)\b"
        r"|\bhow (?:many|much)\b[^.?!\n]{0,60}\b(?:left|remain|remaining|altogether|in total"
        r"|in all)\b",
        words=_w("how"),
    ),
)
_HOW_MUCH = _found(r"\bhow (?:many|much|long|far|fast)\b", words=_w("how"))


def _has_digit(sample: Sample) -> bool:
    return sample.has_digit


_MONEY = _found(r"[$€£]\d", needles=_w("$ € £"))
_SMALL_TALK = _found(
    r"\b(?:how are (?:you|things)|how're you|how's it going|how is it going|how have you been"
    r"|what'?s up|how was your (?:day|weekend)|how's your (?:day|week|morning)"
    r"|nice to meet you|who are you|what'?s your name|what is your name"
    r"|are you (?:a )?(?:human|robot|bot|real|sentient|alive)|do you (?:like|love|enjoy|ever"
    r"|dream|have feelings)|your favou?rite|tell me about yourself|let's (?:chat|talk))\b",
    words=_w("how what whats nice who are do your tell let"),
)
_QUESTION = _found(
    r"\?|\b(?:question|answer):|(?:^|[.!?,:;\n])[ \t]*(?:what|what's|who|whom|whose|when"
    r"|where|which|why|how|explain|describe|define|tell me about|list|name|compare|translate"
    r"|give me|recommend|fill in the blank|complete the sentence)\b"
)

# First match wins. The order puts explicit requests about a format (code, labels, a
# summary, a poem) before generic question shapes, since a request like "Summarize ... ?"
# is still a summary. A fill-in-the-blank sentence with options (Winogrande style) maps to
# "reasoning": choosing what "_" refers to is commonsense inference, not recall; every other
# prompt listing options is "qa". Greetings with nothing else fall through to "chat".
RULES: tuple[tuple[str, str, _Test], ...] = (
    ("code", "source syntax, a stack trace, a language, or a request for code", _CODE),
    ("classification", "a request to label, categorize or judge sentiment", _CLASSIFICATION),
    ("summarization", "summarize / TL;DR / key points / in N sentences", _SUMMARIZATION),
    ("creative", "a request to write a poem, story, slogan, copy or the like", _CREATIVE),
    ("reasoning", "a blank '_' to fill from listed options", _both(_BLANK, _options_listed)),
    ("qa", "a question with lettered or numbered options", _options_listed),
    ("reasoning", "arithmetic, an equation, a proof or a math/logic keyword", _REASONING),
    ("reasoning", "how many/much/long/far about given numbers", _both(_HOW_MUCH, _has_digit)),
    (
        "reasoning",
        "a question about given amounts of money",
        _both(_MONEY, _found(r"\?", needles=_w("?"))),
    ),
    ("chat", "small talk about the assistant or the user", _SMALL_TALK),
    ("qa", "a question mark, a wh-word or explain/define/describe", _QUESTION),
)

# Each marker is one kind of syntax; the score counts how many kinds appear.
CODE_MARKERS = AnyOf(
    _found(r"```", re.MULTILINE, ["```"]),
    _found(r"\bdef [A-Za-z_]\w*\s*\(", re.MULTILINE, ["def "]),
    _found(r"[{}]", re.MULTILINE, ["{", "}"]),
    _found(r";[ \t]*$", re.MULTILINE, [";"]),
    _found(r"==|!=|&&|\|\||=>|->|::", re.MULTILINE, ["==", "!=", "&&", "||", "=>", "->", "::"]),
    _found(
        r"^[ \t]*(?:import [\w.]+|from [\w.]+ import |#include\b|using namespace\b)",
        re.MULTILINE,
        ["import ", "#include", "using namespace"],
    ),
    _found(r"\b[A-Za-z_]\w*\.[A-Za-z_]\w*\(", re.MULTILINE, ["("]),
    _found(r"^(?: {4}|\t)\S", re.MULTILINE, ["    ", "\t"]),
    _found(r"</?[A-Za-z][\w-]*[^<>\n]{0,80}>", re.MULTILINE, ["<"]),
    _found(
        r"Traceback \(most recent|\b[A-Z][a-z]+(?:Error|Exception)\b",
        re.MULTILINE,
        ["Traceback (", "Error", "Exception"],
    ),
)
MATH_MARKERS = AnyOf(
    _found(r"\d[ \t]*[-+*/^×÷][ \t]*\d", needs_digit=True),
    _found(r"(?:\d|\b[a-z])[ \t]*=(?!=)[ \t]*-?[\w(]", needles=_w("=")),
    _found(
        r"\\(?:frac|sqrt|sum|int|prod|lim|cdot|times|pi|theta|alpha|infty|mathbb)\b",
        needles=_w("\\"),
    ),
    _found(r"\$[^$\n]{1,80}\$", needles=_w("$")),
    _found(
        r"[a-z0-9)]\^[-\w({]|[²³√π∑∫≤≥≠±]",
        needles=_w("^ ² ³ √ π ∑ ∫ ≤ ≥ ≠ ±"),
    ),
    _found(r"(?<![\d.])\d+(?:\.\d+)?[ \t]*%", needles=_w("%")),
    _found(
        r"\b(?:solve|equations?|integral|derivative|calculate|compute|simplify|prove|theorem"
        r"|probability|polynomial|matrix|logarithm|factorial|divisible|remainder|fraction)\b",
        words=_w(
            "solve equation equations integral derivative calculate compute simplify prove "
            "theorem probability polynomial matrix logarithm factorial divisible remainder "
            "fraction"
        ),
    ),
)


GATES = GateIndex(PATTERNS)


def sample_text(text: str) -> str:
    """The text the rules and density features read: all of it, or its head and tail."""
    if len(text) <= _HEAD + _TAIL:
        return text
    return text[:_HEAD] + "\n" + text[-_TAIL:]


def infer(sample: Sample) -> str:
    for task, _why, test in RULES:
        if test(sample):
            return task
    return "chat"


def infer_task_type(text: str) -> str:
    """Rule-based rather than learned, so a surprising routing can be traced to one rule.

    See ``RULES`` for the ordered table; the first matching rule decides.
    """
    return infer(Sample(sample_text(text)))
