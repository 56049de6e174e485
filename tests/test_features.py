"""Tests of the prompt features: task inference, bounded numeric features, the dense encoder."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bandit_router.core import FeatureValue
from bandit_router.features import (
    NUMERIC_FEATURES,
    TASK_TYPES,
    FeatureEncoder,
    estimate_tokens,
    featurize,
    infer_task_type,
    prompt_words,
    text_of_messages,
)

ROOT = Path(__file__).resolve().parents[1]

LABELLED_PROMPTS: list[tuple[str, str]] = [
    # qa
    ("qa", "What is the capital of Australia?"),
    ("qa", "Who wrote One Hundred Years of Solitude?"),
    ("qa", "Why is the sky blue?"),
    ("qa", "When did the Berlin Wall fall?"),
    ("qa", "Explain how vaccines train the immune system."),
    ("qa", "what's the difference between a virus and a bacterium"),
    ("qa", "Which of these is a mammal? A) shark B) dolphin C) trout D) octopus"),
    (
        "qa",
        "Question: Which gas do plants absorb from the atmosphere for photosynthesis?\n"
        "(A) oxygen\n(B) nitrogen\n(C) carbon dioxide\n(D) helium\nAnswer:",
    ),
    ("qa", "Hi! Can you tell me who painted the Mona Lisa?"),
    ("qa", "How many moons does Jupiter have?"),
    ("qa", "Give me 3 tips for better sleep"),
    # reasoning
    ("reasoning", "What is 17 * 24?"),
    ("reasoning", "Solve for x: 3x + 7 = 22"),
    ("reasoning", "Prove that the square root of 2 is irrational."),
    (
        "reasoning",
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
        "clips in May. How many clips did Natalia sell altogether in April and May?",
    ),
    ("reasoning", "If a train travels 60 miles per hour for 2.5 hours, how far does it go?"),
    (
        "reasoning",
        "A bat and a ball cost $1.10 in total. The bat costs $1.00 more than the ball. "
        "How much does the ball cost?",
    ),
    ("reasoning", "What is the derivative of x^3 * sin(x)?"),
    ("reasoning", "Is 221 a prime number?"),
    ("reasoning", "Janet has three apples and eats one. How many are left?"),
    ("reasoning", "A store sells pencils at $0.25 each. Jim buys 12. What does he pay?"),
    (
        "reasoning",
        "The trophy doesn't fit into the brown suitcase because _ is too large. "
        "Option 1: trophy Option 2: suitcase",
    ),
    # code
    ("code", "Write a Python function that checks whether a string is a palindrome."),
    ("code", "Why does this throw an error?\n```js\nconst x = [1,2,3];\nx.map(i => i * 2)\n```"),
    (
        "code",
        "def fib(n):\n    return n if n < 2 else fib(n-1) + fib(n-2)\n\nCan you make this faster?",
    ),
    ("code", "How do I reverse a list in Python?"),
    (
        "code",
        "I'm getting TypeError: 'NoneType' object is not subscriptable when I call "
        "get_user()['name'], what am I doing wrong?",
    ),
    ("code", "Write a SQL query that returns the top 5 customers by total order value."),
    ("code", "Implement a binary search in Rust."),
    ("code", "What does git rebase -i do?"),
    ("code", "How do I center a div with CSS?"),
    # classification
    (
        "classification",
        "Classify the sentiment of this review as positive or negative: The battery died "
        "after two days and support never replied.",
    ),
    (
        "classification",
        "Is this email spam? 'Congratulations! You have won a $1,000 gift card. Click here "
        "to claim it.'",
    ),
    (
        "classification",
        "Label each of the following tweets as positive, negative, or neutral:\n"
        "1. Loving the new update!\n2. The app keeps crashing.\n3. It's fine I guess.",
    ),
    (
        "classification",
        "Which category does this headline belong to: sports, politics, business, or "
        "technology? 'Fed raises interest rates by a quarter point'",
    ),
    (
        "classification",
        "Categorize these expenses into food, transport, or entertainment: Uber $23, "
        "Chipotle $12, Netflix $15",
    ),
    (
        "classification",
        "What is the sentiment of this tweet: 'Just got my vaccine, feeling grateful!'",
    ),
    # summarization
    (
        "summarization",
        "Summarize the following article in three bullet points:\nThe city council voted on "
        "Tuesday to expand the bike lane network by 40 miles over the next five years...",
    ),
    (
        "summarization",
        "TL;DR this for me: We are moving the quarterly planning meeting to Thursday because "
        "half the team is out on Monday, and the budget review will happen separately.",
    ),
    (
        "summarization",
        "Can you give me the key takeaways from this meeting transcript? Anna: we need to ship "
        "the beta by March. Ben: QA is behind, we should cut the export feature.",
    ),
    (
        "summarization",
        "Condense this paragraph into a single sentence: Remote work has grown steadily since "
        "2020, and while many employees value the flexibility, managers worry about "
        "collaboration and mentoring of junior staff.",
    ),
    ("summarization", "Write a short summary of the plot of Hamlet."),
    (
        "summarization",
        "Explain the main points of this email in a few sentences: Hi all, starting next "
        "month expense reports must be filed within 30 days...",
    ),
    # creative
    ("creative", "Write a poem about autumn leaves falling in the rain."),
    (
        "creative",
        "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    ),
    ("creative", "Come up with a catchy slogan for a vegan bakery."),
    ("creative", "Compose a haiku about the ocean."),
    ("creative", "Write Instagram ad copy for our new noise-cancelling headphones, playful tone."),
    ("creative", "Give me five name ideas for a coffee shop in Brooklyn."),
    ("creative", "Tell me a bedtime story about a dragon who is afraid of the dark."),
    # chat
    ("chat", "hi, how are you"),
    ("chat", "Hey! How's your day going?"),
    ("chat", "I'm feeling kind of lonely tonight."),
    ("chat", "Thanks, that was really helpful!"),
    ("chat", "Good morning!"),
    ("chat", "What's your favorite movie?"),
    ("chat", "lol that's hilarious"),
    ("chat", "Do you ever get tired of answering questions?"),
]

TEXTS = [
    "",
    " ",
    "\n\n\n",
    "?" * 50,
    "A" * 5000,
    "9" * 30_000,
    "_" * 100,
    "x " * 40_000,
    "💡🚀 emoji only 💡",
    "漢字だけの文章です。これはテストです。",
    "```python\nimport os\nprint(os.getcwd())\n```",
] + [prompt for _, prompt in LABELLED_PROMPTS]


def test_every_labelled_task_type_has_at_least_five_examples() -> None:
    counts = {task: sum(label == task for label, _ in LABELLED_PROMPTS) for task in TASK_TYPES}
    assert min(counts.values()) >= 5, counts


@pytest.mark.parametrize(("expected", "prompt"), LABELLED_PROMPTS)
def test_infer_task_type_labels_realistic_prompts(expected: str, prompt: str) -> None:
    assert infer_task_type(prompt) == expected


@given(st.text())
def test_infer_task_type_always_returns_a_known_task(text: str) -> None:
    assert infer_task_type(text) in TASK_TYPES


def test_winogrande_style_blank_with_options_is_reasoning_even_for_lettered_options() -> None:
    prompt = "Sarah lent Maria her bike because _ was running late. A) Sarah B) Maria"
    assert infer_task_type(prompt) == "reasoning"


def test_infer_task_type_reads_the_tail_of_a_long_prompt() -> None:
    body = "The committee met on Monday and discussed the new budget at length. " * 2000
    assert infer_task_type(body + "\n\nTL;DR:") == "summarization"


def test_given_task_type_overrides_inference_and_is_normalized() -> None:
    assert featurize("What is 2 + 2?", task_type="  Code ")["task_type"] == "code"


def test_unknown_given_task_type_is_kept() -> None:
    assert featurize("hello", task_type="translation")["task_type"] == "translation"


def test_empty_given_task_type_falls_back_to_inference() -> None:
    assert featurize("Write a poem about the sea.", task_type=" ")["task_type"] == "creative"


def test_extras_appear_under_x_prefix_with_their_types() -> None:
    features = featurize("hi", extra={"tier": "gold", "budget": 3, "score": 0.25})
    assert features["x.tier"] == "gold"
    assert features["x.budget"] == 3.0
    assert isinstance(features["x.budget"], float)
    assert features["x.score"] == 0.25
    assert "tier" not in features


_UP_TO_1_5 = ("log_tokens", "lines", "avg_word_len")


def _assert_bounded(features: dict[str, FeatureValue]) -> None:
    for name in NUMERIC_FEATURES:
        value = features[name]
        assert isinstance(value, float), name
        assert 0.0 <= value <= (1.5 if name in _UP_TO_1_5 else 1.0), (name, value)
    assert features["multiple_choice"] in (0.0, 1.0)
    assert isinstance(features["tokens"], float)
    assert isinstance(features["task_type"], str)


@pytest.mark.parametrize("text", TEXTS)
def test_numeric_features_are_floats_in_documented_ranges(text: str) -> None:
    _assert_bounded(featurize(text))


@given(st.text())
def test_featurize_never_raises_and_stays_in_range(text: str) -> None:
    _assert_bounded(featurize(text))


def test_featurize_returns_every_numeric_feature_and_raw_tokens() -> None:
    features = featurize("What is the capital of France?")
    assert set(NUMERIC_FEATURES) | {"task_type", "tokens"} <= set(features)
    assert "tokens" not in NUMERIC_FEATURES


def test_code_prompt_scores_code_markers_above_prose() -> None:
    code = featurize("```python\nimport os\n\ndef main():\n    if a == b:\n        x.run()\n```")
    prose = featurize("Tell me about the history of the Roman Empire.")
    assert code["code_markers"] == 1.0
    assert prose["code_markers"] == 0.0


def test_math_prompt_scores_math_markers_above_prose() -> None:
    math_prompt = featurize("Solve $x^2 - 5x + 6 = 0$ and compute 3 * 4.")
    prose = featurize("Tell me about the history of the Roman Empire.")
    assert math_prompt["math_markers"] == 1.0
    assert prose["math_markers"] == 0.0


def test_questions_counts_question_marks_up_to_five() -> None:
    assert featurize("Why? How?")["questions"] == pytest.approx(0.4)
    assert featurize("?" * 12)["questions"] == 1.0


@pytest.mark.parametrize(
    "prompt",
    [
        "What is the largest planet? A) Mars B) Jupiter C) Venus",
        "Pick one:\n(a) red\n(b) blue",
        "Which is correct?\nA. 12\nB. 14\nC. 16",
        "Fill the blank: I _ to school. Option 1: go Option 2: goes",
    ],
)
def test_multiple_choice_detects_listed_options(prompt: str) -> None:
    assert featurize(prompt)["multiple_choice"] == 1.0


@pytest.mark.parametrize(
    "prompt",
    [
        "Steps:\n1. Preheat the oven.\n2. Mix the flour.",
        "Plan A is better than plan B in my opinion",
        "A: hi there\nB: hello",
        "Option 1 is the only one I know.",
    ],
)
def test_multiple_choice_ignores_lists_and_dialogue(prompt: str) -> None:
    assert featurize(prompt)["multiple_choice"] == 0.0


def test_estimate_tokens_is_zero_only_for_empty_text() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens(" ") == 1
    assert estimate_tokens("a") == 1


def test_estimate_tokens_is_about_four_characters_per_token_for_prose() -> None:
    prose = "The quick brown fox jumps over the lazy dog. " * 100
    assert 0.8 * len(prose) / 4 <= estimate_tokens(prose) <= 1.3 * len(prose) / 4


@given(st.text(), st.text())
def test_estimate_tokens_never_decreases_when_text_is_appended(head: str, tail: str) -> None:
    assert estimate_tokens(head + tail) >= estimate_tokens(head)


def test_tokens_feature_counts_the_whole_text_of_a_huge_prompt() -> None:
    text = "word " * 200_000
    features = featurize(text)
    assert features["tokens"] == float(estimate_tokens(text))
    assert features["tokens"] > 200_000


def test_one_megabyte_prompt_featurizes() -> None:
    text = ("Solve 3x + 7 = 22 {;} (a) ```def f(x): return x``` _ ? \n" * 20_000)[:1_000_000]
    assert len(text) == 1_000_000
    _assert_bounded(featurize(text))


def test_text_of_messages_joins_contents_only() -> None:
    messages = [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!")]
    assert text_of_messages(messages) == "Be brief.\nHi\nHello!"
    assert text_of_messages([]) == ""


def test_prompt_words_lowercases_and_stops_at_limit() -> None:
    assert prompt_words("Hello, World! snake_case 42") == ("hello", "world", "snake_case", "42")
    assert prompt_words("a b c d", limit=2) == ("a", "b")
    assert prompt_words("a b", limit=0) == ()


def test_encoder_dim_is_bias_numeric_tasks_other_and_hashed() -> None:
    assert FeatureEncoder().dim == 1 + len(NUMERIC_FEATURES) + len(TASK_TYPES) + 1 + 16
    assert FeatureEncoder(hashed_dim=4).dim == 1 + len(NUMERIC_FEATURES) + len(TASK_TYPES) + 5


def test_encoder_rejects_negative_hashed_dim() -> None:
    with pytest.raises(ValueError, match="hashed_dim"):
        FeatureEncoder(hashed_dim=-1)


def test_encoder_is_deterministic_float64_with_bias_one() -> None:
    encoder = FeatureEncoder()
    features = featurize("Write a poem about rain", extra={"tier": "gold"})
    first, second = encoder.encode(features), encoder.encode(dict(features))
    assert first.dtype == np.float64
    assert first.shape == (encoder.dim,)
    assert first[0] == 1.0
    assert np.array_equal(first, second)


def test_encoder_places_numeric_features_in_fixed_order() -> None:
    features = featurize("What is 2 + 2?")
    vector = FeatureEncoder().encode(features)
    expected = [features[name] for name in NUMERIC_FEATURES]
    assert vector[1 : 1 + len(NUMERIC_FEATURES)].tolist() == expected


def test_encoder_missing_numeric_features_are_zero_and_tokens_is_ignored() -> None:
    encoder = FeatureEncoder()
    vector = encoder.encode({"tokens": 12345.0})
    assert vector[0] == 1.0
    assert not vector[1:].any()


@pytest.mark.parametrize("task", TASK_TYPES)
def test_encoder_sets_the_one_hot_slot_of_the_task(task: str) -> None:
    vector = FeatureEncoder().encode({"task_type": task})
    block = vector[1 + len(NUMERIC_FEATURES) : 1 + len(NUMERIC_FEATURES) + len(TASK_TYPES) + 1]
    assert block.tolist() == [1.0 if t == task else 0.0 for t in TASK_TYPES] + [0.0]


def test_encoder_puts_unknown_task_in_the_other_slot() -> None:
    vector = FeatureEncoder().encode({"task_type": "translation"})
    other = 1 + len(NUMERIC_FEATURES) + len(TASK_TYPES)
    assert vector[other] == 1.0
    assert vector.sum() == 2.0  # bias + other


def test_encoder_reads_only_the_features_it_is_given_and_every_escalation_feature() -> None:
    features = {
        **featurize("def f(x): return x  # what is 2 + 2?", "code", {"tier": "gold"}),
        "attempt": 2.0,
        "previous_model": "small",
        "previous_quality": 0.0,
    }
    everything = FeatureEncoder().encode(features)
    only_task = FeatureEncoder(features=["task_type"])
    vector = only_task.encode(features)
    assert vector.shape == everything.shape
    task_slot = 1 + len(NUMERIC_FEATURES) + TASK_TYPES.index("code")
    assert vector[task_slot] == everything[task_slot] == 1.0
    assert not vector[1 : 1 + len(NUMERIC_FEATURES)].any()  # no density feature read
    # The escalation's attempt and previous model are still there; the caller's tier is not.
    hashed = vector[only_task.dim - 16 :]
    escalation_only = FeatureEncoder(features=["task_type"]).encode(
        {"task_type": "code", "attempt": 2.0, "previous_model": "small", "previous_quality": 0.0}
    )
    assert np.array_equal(vector, escalation_only)
    assert np.count_nonzero(hashed) >= 1
    assert only_task.features == ("task_type",)
    assert FeatureEncoder().features is None


@pytest.mark.parametrize("bad", ["task_type", ["task_type", 3], [""]])
def test_encoder_refuses_features_that_are_not_a_list_of_names(bad: object) -> None:
    with pytest.raises(ValueError, match="features must be a list of feature names"):
        FeatureEncoder(features=bad)  # type: ignore[arg-type]


def test_encoder_string_extra_sets_exactly_one_hashed_slot_to_plus_or_minus_one() -> None:
    encoder = FeatureEncoder(hashed_dim=16)
    hashed = encoder.encode({"x.tier": "gold"})[encoder.dim - 16 :]
    assert np.count_nonzero(hashed) == 1
    assert abs(hashed).max() == 1.0


def test_encoder_numeric_extra_is_hashed_signed_and_clipped() -> None:
    encoder = FeatureEncoder(hashed_dim=16)
    small = encoder.encode({"x.budget": 2.5})[encoder.dim - 16 :]
    huge = encoder.encode({"x.budget": 1e9})[encoder.dim - 16 :]
    assert np.count_nonzero(small) == 1
    assert abs(small).max() == 2.5
    assert abs(huge).max() == 10.0


def test_encoder_turns_non_finite_numbers_into_zero() -> None:
    vector = FeatureEncoder().encode({"digit_share": math.nan, "x.score": math.inf})
    assert np.isfinite(vector).all()
    assert vector.sum() == 1.0


def test_encoder_with_no_hashed_slots_drops_other_features() -> None:
    encoder = FeatureEncoder(hashed_dim=0)
    assert encoder.encode({"x.tier": "gold", "x.n": 3.0}).sum() == 1.0


_STABILITY_FEATURES: dict[str, FeatureValue] = {
    "task_type": "qa",
    "x.tier": "gold",
    "x.region": "eu",
    "x.score": 0.5,
}


def test_encoder_hashing_is_stable_across_processes() -> None:
    code = (
        "import json\n"
        "from bandit_router.features import FeatureEncoder\n"
        f"features = json.loads({json.dumps(json.dumps(_STABILITY_FEATURES))})\n"
        "print(json.dumps(FeatureEncoder(hashed_dim=64).encode(features).tolist()))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=ROOT
    )
    here = FeatureEncoder(hashed_dim=64).encode(_STABILITY_FEATURES).tolist()
    assert json.loads(result.stdout) == here


@given(st.text())
@example("\x1c\x1d\x1e\x1f a\tB9\x0b\x0c\r\n")
@example("½ Ⅻ ß ǅ")
def test_fast_character_counts_equal_the_str_methods(text: str) -> None:
    """The bytes.translate shortcut for ASCII counts exactly what str.isalpha() & co. count."""
    from bandit_router.features import _char_counts

    expected = (
        sum(map(str.isalpha, text)),
        sum(map(str.isdigit, text)),
        sum(map(str.isspace, text)),
        sum(map(str.isupper, text)),
    )
    assert _char_counts(text) == expected
    ascii_only = "".join(c for c in text if c.isascii())
    assert _char_counts(ascii_only) == (
        sum(map(str.isalpha, ascii_only)),
        sum(map(str.isdigit, ascii_only)),
        sum(map(str.isspace, ascii_only)),
        sum(map(str.isupper, ascii_only)),
    )


@given(st.text(st.characters(max_codepoint=127)) | st.text())
def test_sample_words_are_the_regex_words_of_the_lowered_text(text: str) -> None:
    """The ASCII shortcut splits exactly where \\w+ does."""
    from bandit_router.text_rules import Sample

    assert Sample(text).words == re.findall(r"\w+", text.lower())


def _fragments() -> list[str]:
    """Words, needles and syntax the rules look for, to build texts that make them match."""
    from bandit_router.text_rules import PATTERNS

    pieces = {piece for p in PATTERNS for piece in (*p.needles, *p.words)}
    pieces |= {"Write", "a", "the", "function", "that", "how many", "left", "?", "A)", "B)",
               "Option 1:", "Option 2:", "\n", " ", "    ", "=", "x = 3", "2 + 2", "50%", "$",
               "ValueError", "Traceback (most recent", "if", "_", ".", "(", ")", "{", "}",
               "in python", "sql query", "this code", "git push", "stack trace", "$x^2$",
               "\\frac", "c++", "node.js", "C#", "prime number", "how many ways",
               "٣ + ٤", "۵%", "x=٣"}  # fmt: skip
    return sorted(pieces)


@given(st.lists(st.sampled_from(_fragments()), max_size=40).map(" ".join))
def test_rule_gates_never_skip_a_pattern_that_matches(text: str) -> None:
    """Each pattern's needles or words only skip searches that could not match: the gated
    answer equals the plain regex search, on texts built from the rules' own vocabulary."""
    from bandit_router.text_rules import PATTERNS, Sample

    sample = Sample(text)
    for pattern in PATTERNS:
        target = sample.low if pattern.lowered else sample.text
        assert pattern(sample) == (pattern.regex.search(target) is not None), pattern.regex


@pytest.mark.parametrize("text", TEXTS)
def test_rule_gates_agree_with_the_plain_search_on_every_labelled_prompt(text: str) -> None:
    from bandit_router.text_rules import PATTERNS, Sample

    sample = Sample(text)
    for pattern in PATTERNS:
        target = sample.low if pattern.lowered else sample.text
        assert pattern(sample) == (pattern.regex.search(target) is not None), pattern.regex


def test_a_gate_that_hides_a_match_is_caught() -> None:
    """The check above can fail: a pattern gated on a word its matches lack disagrees."""
    from bandit_router.text_rules import PATTERNS, Pattern, Sample

    wrong = Pattern(r"\bsolve\b", re.IGNORECASE, (), ["prove"])
    PATTERNS.remove(wrong)
    sample = Sample("Solve for x.")
    assert wrong(sample) is False
    assert wrong.regex.search(sample.low) is not None
