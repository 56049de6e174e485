"""Task type by an ordered table of readable rules, and the code and math markers.

Each rule is a regular expression written for people to read; `infer_task_type` returns the
task of the first rule that matches. What makes the rules cheap (the prompt lowercased once,
every pattern gated by substrings, whole words or a digit that every match needs) is the
matching code of ``text_patterns``; this module holds the tables and the lexicons they read.
Every regular expression here is linear: no nested quantifiers, and each variable-length piece
is either anchored to a word or line start or bounded.
"""

from __future__ import annotations

import re

from bandit_router.text_patterns import (
    PATTERNS,
    AnyOf,
    Pattern,
    Sample,
    SampleTest,
    both,
    each,
    found,
    options_listed,
)

# Sample, Pattern and PATTERNS are text_patterns' own: features and the tests read them here,
# where importing the module has registered every rule's pattern in PATTERNS.
__all__ = [
    "CODE_MARKERS",
    "MATH_MARKERS",
    "PATTERNS",
    "RULES",
    "TASK_TYPES",
    "Pattern",
    "Sample",
    "infer",
    "infer_task_type",
    "sample_text",
]

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
_CODE_FLAGS = re.IGNORECASE | re.MULTILINE
_CODE = AnyOf(
    found(r"```", _CODE_FLAGS, ["```"]),
    found(r"\bdef [A-Za-z_]\w*\s*\(", _CODE_FLAGS, ["def "]),
    found(r"#include\b", _CODE_FLAGS, ["#include"]),
    found(r"^[ \t]*(?:import [\w.]+|from [\w.]+ import )", _CODE_FLAGS, ["import "]),
    found(r"\{[ \t]*\n|^[ \t]*\}", _CODE_FLAGS, ["{", "}"]),
    found(r"=>", _CODE_FLAGS, ["=>"]),
    found(r"\bconsole\.log|System\.out", _CODE_FLAGS, ["console.log", "system.out"]),
    found(
        r"Traceback \(most recent|\b[A-Z][a-z]+(?:Error|Exception)\b",
        _CODE_FLAGS,
        ["traceback (", "error", "exception"],
    ),
    found(
        r"\b(?:in|using|with) (?:" + _LANGS + r")\b"
        r"|\b(?:" + _LANGS + r") (?:function|script|code|program|class|snippet|error|library"
        r"|package|module|query)\b",
        _CODE_FLAGS,
        words=_LANG_WORDS,
    ),
    found(
        r"\b(?:write|implement|create|build|fix|debug|refactor|optimi[sz]e|complete|convert"
        r"|port|generate)\b[^.?!\n]{0,60}\b(?:function|method|algorithm|regex|regular expression"
        r"|unit tests?|snippet|endpoint|(?:sql|database) query|code(?! of conduct)"
        r"|script (?:to|that)|program (?:that|to|which)|class (?:that|to|for|called|named))\b",
        _CODE_FLAGS,
        words=each(
            "write implement create build fix debug refactor optimise optimize complete "
            "convert port generate"
        ),
    ),
    found(
        r"\b(?:this|my|the following|the above|the below) (?:code|function|script|snippet"
        r"|regex)\b",
        _CODE_FLAGS,
        words=each("code function script snippet regex"),
    ),
    found(
        r"\b(?:compiler?|segfault|stack trace|syntax error|pip install|npm install"
        r"|time complexity|git (?:commit|merge|rebase|push|pull|stash|reset))\b",
        _CODE_FLAGS,
        words=each("compile compiler segfault stack syntax pip npm time git"),
    ),
)
# Each rule below is split where its alternatives need different words, so a prompt pays for a
# search only when a word a match needs is there ("which" alone opens nothing: "which genre"
# needs "genre").
_CLASSIFICATION = AnyOf(
    found(
        r"\b(?:classify|classification|categori[sz]e|positive or negative|sentiment analysis"
        r"|sentiment of (?:this|that|these|the following|each|my)"
        r"|positive, negative,? or neutral|spam or (?:not|ham))\b",
        words=each("classify classification categorise categorize positive sentiment spam"),
    ),
    found(
        r"\b(?:is|are) (?:this|it|these|the following)\b[^.?!\n]{0,40}\b(?:spam|toxic"
        r"|offensive|sarcastic|clickbait|fake news)\b",
        words=each("spam toxic offensive sarcastic clickbait fake"),
    ),
    found(r"\blabel (?:it|this|these|each|every|the \w+)\b", words=each("label")),
    found(
        r"\bwhich (?:category|class|label|genre|topic|department|intent)\b",
        words=each("category class label genre topic department intent"),
    ),
    found(r"\bassign (?:a|one|the) (?:label|category|tag)\b", words=each("assign")),
    found(r"\bdetect the (?:language|intent|emotion|tone)\b", words=each("detect")),
)
_SUMMARIZATION = AnyOf(
    found(
        r"\b(?:summari[sz]e|summari[sz]ing|summary|summaries|tl;? ?dr|recap|condense|synopsis"
        r"|gist)\b",
        words=each(
            "summarise summarize summarising summarizing summary summaries tl tldr recap "
            "condense synopsis gist"
        ),
    ),
    found(
        r"\b(?:key (?:points|takeaways)|main (?:points?|ideas?))\b",
        words=each("points takeaways point idea ideas"),
    ),
    found(r"\bboil (?:this|it) down\b", words=each("boil")),
    found(
        r"\bin (?:a few|one|two|three|four|five|\d) (?:sentences?|bullet points|bullets"
        r"|lines)\b",
        words=each("sentence sentences bullet bullets lines"),
    ),
)
_CREATIVE = AnyOf(
    found(
        r"\b(?:write|compose|draft|create|generate|come up with|give me|make up|craft|tell me"
        r"|brainstorm|suggest|need)\b[^.?!\n]{0,50}\b(?:poems?|haikus?|limericks?|sonnets?|ode"
        r"|verses?|rhymes?|story|stories|tale|fable|song|lyrics|rap|slogans?|taglines?|jingle"
        r"|ad copy|advert|advertisement|marketing (?:copy|email)|product description|caption"
        r"|tweet|jokes?|puns?|screenplay|script for|monologue|dialogue|essay|blog post|article"
        r"|email|letter|speech|toast|wedding vows|names? (?:ideas )?for|name ideas|riddle)\b",
        words=each(
            "poem poems haiku haikus limerick limericks sonnet sonnets ode verse verses rhyme "
            "rhymes story stories tale fable song lyrics rap slogan slogans tagline taglines "
            "jingle ad advert advertisement marketing product caption tweet joke jokes pun "
            "puns screenplay script monologue dialogue essay blog article email letter speech "
            "toast wedding name names riddle"
        ),
    ),
    found(
        r"\bonce upon a time\b|\bin the style of\b|\bcatchy\b",
        words=each("once style catchy"),
    ),
)
_BLANK = found(r"(?<!\w)_+(?!\w)", needles=each("_"))
# Arithmetic is split by what each form needs besides a digit: "b = 3" tries every word start
# and "3 times 4" every digit, so those parts are searched only when "=" or the word is there.
_REASONING = AnyOf(
    found(r"\d[ \t]*[+*×÷^][ \t]*\d|\d[ \t]+[-/][ \t]+\d", needs_digit=True),
    found(r"(?<![\d.])\d+[ \t]*%[ \t]*of\b", needles=each("%")),
    found(
        r"\b\d+ (?:times|plus|minus|divided by|multiplied by) \d",
        words=each("times plus minus divided multiplied"),
    ),
    found(r"(?:\d|\b[a-z])[ \t]*=[ \t]*-?\d", needles=each("=")),
    found(r"\\(?:frac|sqrt|sum|int|cdot|times)\b", needles=each("\\")),
    found(
        r"\b(?:solve|prove|proof|equations?|integral|derivative|differentiate|simplify"
        r"|factori[sz]e|probability|theorem|prime number|divisible|remainder when|how many ways"
        r"|logic puzzle|riddle|brain teaser|next number in|syllogism|calculate|compute)\b",
        words=each(
            "solve prove proof equation equations integral derivative differentiate simplify "
            "factorise factorize probability theorem prime divisible remainder how logic "
            "riddle brain next syllogism calculate compute"
        ),
    ),
    found(
        r"\bif\b[^?]{0,200}\bhow (?:many|much|long|far|old|fast)\b"
        r"|\bhow (?:many|much)\b[^.?!\n]{0,60}\b(?:left|remain|remaining|altogether|in total"
        r"|in all)\b",
        words=each("how"),
    ),
)
_HOW_MUCH = found(r"\bhow (?:many|much|long|far|fast)\b", words=each("how"))


def _has_digit(sample: Sample) -> bool:
    return sample.has_digit


_MONEY = found(r"[$€£]\d", needles=each("$ € £"))
_SMALL_TALK = found(
    r"\b(?:how are (?:you|things)|how're you|how's it going|how is it going|how have you been"
    r"|what'?s up|how was your (?:day|weekend)|how's your (?:day|week|morning)"
    r"|nice to meet you|who are you|what'?s your name|what is your name"
    r"|are you (?:a )?(?:human|robot|bot|real|sentient|alive)|do you (?:like|love|enjoy|ever"
    r"|dream|have feelings)|your favou?rite|tell me about yourself|let's (?:chat|talk))\b",
    words=each("how what whats nice who are do your tell let"),
)
_QUESTION = found(
    r"\?|\b(?:question|answer):|(?:^|[.!?,:;\n])[ \t]*(?:what|what's|who|whom|whose|when"
    r"|where|which|why|how|explain|describe|define|tell me about|list|name|compare|translate"
    r"|give me|recommend|fill in the blank|complete the sentence)\b"
)

# First match wins. The order puts explicit requests about a format (code, labels, a
# summary, a poem) before generic question shapes, since a request like "Summarize ... ?"
# is still a summary. A fill-in-the-blank sentence with options (Winogrande style) maps to
# "reasoning": choosing what "_" refers to is commonsense inference, not recall; every other
# prompt listing options is "qa". Greetings with nothing else fall through to "chat".
RULES: tuple[tuple[str, str, SampleTest], ...] = (
    ("code", "source syntax, a stack trace, a language, or a request for code", _CODE),
    ("classification", "a request to label, categorize or judge sentiment", _CLASSIFICATION),
    ("summarization", "summarize / TL;DR / key points / in N sentences", _SUMMARIZATION),
    ("creative", "a request to write a poem, story, slogan, copy or the like", _CREATIVE),
    ("reasoning", "a blank '_' to fill from listed options", both(_BLANK, options_listed)),
    ("qa", "a question with lettered or numbered options", options_listed),
    ("reasoning", "arithmetic, an equation, a proof or a math/logic keyword", _REASONING),
    ("reasoning", "how many/much/long/far about given numbers", both(_HOW_MUCH, _has_digit)),
    (
        "reasoning",
        "a question about given amounts of money",
        both(_MONEY, found(r"\?", needles=each("?"))),
    ),
    ("chat", "small talk about the assistant or the user", _SMALL_TALK),
    ("qa", "a question mark, a wh-word or explain/define/describe", _QUESTION),
)

# Each marker is one kind of syntax; the score counts how many kinds appear.
CODE_MARKERS = AnyOf(
    found(r"```", re.MULTILINE, ["```"]),
    found(r"\bdef [A-Za-z_]\w*\s*\(", re.MULTILINE, ["def "]),
    found(r"[{}]", re.MULTILINE, ["{", "}"]),
    found(r";[ \t]*$", re.MULTILINE, [";"]),
    found(r"==|!=|&&|\|\||=>|->|::", re.MULTILINE, ["==", "!=", "&&", "||", "=>", "->", "::"]),
    found(
        r"^[ \t]*(?:import [\w.]+|from [\w.]+ import |#include\b|using namespace\b)",
        re.MULTILINE,
        ["import ", "#include", "using namespace"],
    ),
    found(r"\b[A-Za-z_]\w*\.[A-Za-z_]\w*\(", re.MULTILINE, ["("]),
    found(r"^(?: {4}|\t)\S", re.MULTILINE, ["    ", "\t"]),
    found(r"</?[A-Za-z][\w-]*[^<>\n]{0,80}>", re.MULTILINE, ["<"]),
    found(
        r"Traceback \(most recent|\b[A-Z][a-z]+(?:Error|Exception)\b",
        re.MULTILINE,
        ["Traceback (", "Error", "Exception"],
    ),
)
MATH_MARKERS = AnyOf(
    found(r"\d[ \t]*[-+*/^×÷][ \t]*\d", needs_digit=True),
    found(r"(?:\d|\b[a-z])[ \t]*=(?!=)[ \t]*-?[\w(]", needles=each("=")),
    found(
        r"\\(?:frac|sqrt|sum|int|prod|lim|cdot|times|pi|theta|alpha|infty|mathbb)\b",
        needles=each("\\"),
    ),
    found(r"\$[^$\n]{1,80}\$", needles=each("$")),
    found(
        r"[a-z0-9)]\^[-\w({]|[²³√π∑∫≤≥≠±]",
        needles=each("^ ² ³ √ π ∑ ∫ ≤ ≥ ≠ ±"),
    ),
    found(r"(?<![\d.])\d+(?:\.\d+)?[ \t]*%", needles=each("%")),
    found(
        r"\b(?:solve|equations?|integral|derivative|calculate|compute|simplify|prove|theorem"
        r"|probability|polynomial|matrix|logarithm|factorial|divisible|remainder|fraction)\b",
        words=each(
            "solve equation equations integral derivative calculate compute simplify prove "
            "theorem probability polynomial matrix logarithm factorial divisible remainder "
            "fraction"
        ),
    ),
)


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
