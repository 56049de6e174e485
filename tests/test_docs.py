"""The user documentation stays true: its links lead somewhere and its commands parse.

Two checks, each a function from a page's text to its problems, run over every page a user
reads (README.md, docs/*.md, bench/*.md, data/routerbench/README.md):

- `broken_links`: a relative Markdown link must name a file or folder of the repository, and
  its `#anchor`, when it has one, a heading of the Markdown page it leads to;
- `bad_commands`: a `bandit-router …` command in a fenced shell code block (no language, or
  sh, bash, shell, console) must use subcommands and flags that
  `bandit_router.cli.build_parser()` has.

Each is also run on small bad inputs, so the test is seen to fail when a page goes wrong.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bandit_router.cli import build_parser
from tests.support import REPO

PAGES = sorted(
    [
        REPO / "README.md",
        *(REPO / "docs").glob("*.md"),
        *(REPO / "bench").glob("*.md"),
        REPO / "data" / "routerbench" / "README.md",
    ]
)

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`+[^`\n]*`+")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
SHELL_BLOCKS = {"", "sh", "bash", "shell", "console", "zsh"}
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1"}


def _prose(text: str) -> str:
    """The page without its code: fenced blocks and inline code spans hold no links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces
    as hyphens, and -1, -2, ... on repeats."""
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", text)):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
        slug = re.sub(r"[^\w\- ]", "", plain.strip().lower()).replace(" ", "-")
        candidate, repeat = slug, 0
        while candidate in found:
            repeat += 1
            candidate = f"{slug}-{repeat}"
        found.add(candidate)
    return found


def broken_links(text: str, page: Path, root: Path = REPO) -> list[str]:
    """Every relative link of the page (its path relative to the page's folder) that names
    no file of the repository under root, leaves the repository, or names an anchor that the
    target Markdown page lacks. Links with a scheme (https:, mailto:) are not followed."""
    problems = []
    for target in LINK.findall(_prose(text)):
        if SCHEME.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        path_part = path_part.split("?", 1)[0]
        if not path_part:  # an anchor of the page itself
            if anchor not in anchors(text):
                problems.append(f"{page.name}: {target}: no heading #{anchor}")
            continue
        resolved = (page.parent / path_part).resolve()
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{page.name}: {target} leads outside the repository")
        elif not resolved.exists():
            problems.append(f"{page.name}: {target} does not exist")
        elif (
            anchor
            and resolved.suffix == ".md"
            and resolved.is_file()
            and anchor not in anchors(resolved.read_text())
        ):
            problems.append(f"{page.name}: {target}: no heading #{anchor}")
    return problems


def _commands(text: str) -> list[list[str]]:
    """The `bandit-router` commands of the page's fenced code blocks, as argument lists
    (continued lines joined, comments and everything after a shell operator dropped)."""
    commands = []
    for block in FENCE.finditer(text):
        opening, body = block.group(0).split("\n", 1)
        if opening.strip("`~ \t").lower() not in SHELL_BLOCKS:
            continue  # a diagram (text), a configuration file, Python
        body = body.rsplit("\n", 1)[0]
        for line in body.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            arguments: list[str] | None = None  # the command being read, if any
            for word in words:
                if word in SHELL_OPERATORS:
                    arguments = None
                elif arguments is not None:
                    arguments.append(word)
                elif word == "bandit-router" or word.endswith("/bandit-router"):
                    arguments = []
                    commands.append(arguments)
    return commands


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _problems_of(
    arguments: list[str], parser: argparse.ArgumentParser, command: list[str] | None = None
) -> list[str]:
    """What the parser (walked down its subcommands) would not take in these arguments."""
    problems: list[str] = []
    command = list(command or ["bandit-router"])
    words = iter(arguments)
    for word in words:
        if word.startswith("-") and word != "-":
            flag, has_value, _ = word.partition("=")
            action = parser._option_string_actions.get(flag)
            if flag in {"-h", "--help"}:
                return problems
            if action is None:
                problems.append(f"{' '.join(command)}: no flag {flag}")
            if not has_value and (action is None or action.nargs != 0):
                # The flag's value (an unknown flag is taken to have one, if one follows).
                value = next(words, None)
                if value is not None and value.startswith("-"):
                    problems.extend(_problems_of([value, *words], parser, command))
                    return problems
            continue
        subcommands = _subcommands(parser)
        if subcommands:
            if word not in subcommands:
                problems.append(f"{' '.join(command)}: no subcommand {word}")
                return problems
            parser = subcommands[word]
            command.append(word)
            continue
        problems.append(f"{' '.join(command)}: unexpected argument {word}")
    if _subcommands(parser):
        problems.append(f"{' '.join(command)}: a subcommand is missing")
    return problems


def bad_commands(text: str, parser: argparse.ArgumentParser | None = None) -> list[str]:
    """Every subcommand or flag of a fenced `bandit-router` command that the CLI lacks."""
    parser = parser or build_parser()
    return [problem for words in _commands(text) for problem in _problems_of(words, parser)]


def test_the_pages_a_user_reads_exist() -> None:
    names = {page.relative_to(REPO).as_posix() for page in PAGES}
    assert {"README.md", "docs/api.md", "bench/README.md", "data/routerbench/README.md"} <= names
    assert all(page.is_file() for page in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO).as_posix())
def test_every_relative_link_leads_to_a_file(page: Path) -> None:
    assert broken_links(page.read_text(), page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO).as_posix())
def test_every_documented_command_parses(page: Path) -> None:
    assert bad_commands(page.read_text()) == []


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "here.md").write_text("# Here\n\n## Two words\n")
    page = tmp_path / "README.md"
    text = (
        "[fine](docs/here.md) [fine too](docs/here.md#two-words) [web](https://example.com)\n"
        "[gone](docs/missing.md) [no anchor](docs/here.md#nowhere) [out](../elsewhere.md)\n"
        "[self](#top) `[in code](not/checked.md)`\n\n# Top\n\n"
        "```\n[in a block](not/checked/either.md)\n```\n"
    )
    assert broken_links(text, page, root=tmp_path) == [
        "README.md: docs/missing.md does not exist",
        "README.md: docs/here.md#nowhere: no heading #nowhere",
        "README.md: ../elsewhere.md leads outside the repository",
    ]


def test_a_bogus_subcommand_or_flag_is_reported() -> None:
    text = """
Prose may say bandit-router serve --no-such-flag; only code blocks are commands.

```sh
.venv/bin/bandit-router replay --train data/routerbench/train.csv.gz \\
    --holdout 0.3 --seeds=2 --out report   # a comment --not-a-flag
bandit-router serve --host 0.0.0.0 --porrt 8000 | tee log
bandit-router db upgrade --revision head
bandit-router db downgrade
bandit-router serv
bandit-router replay --train t.csv --no-access-log
bandit-router serve --no-access-log --learner=none && bandit-router --bogus
```
"""
    assert bad_commands(text) == [
        "bandit-router serve: no flag --porrt",
        "bandit-router db: no subcommand downgrade",
        "bandit-router: no subcommand serv",
        "bandit-router replay: no flag --no-access-log",
        "bandit-router: no flag --bogus",
        "bandit-router: a subcommand is missing",
    ]


def test_anchors_follow_github_s_rules() -> None:
    text = "# bandit_router\n## Where a `/route`'s time goes\n## Notes\n## Notes\n"
    assert anchors(text) == {"bandit_router", "where-a-routes-time-goes", "notes", "notes-1"}


def test_the_readme_s_replay_example_runs_as_written(tmp_path: Path) -> None:
    """From the repository root, on the table the repository ships; only the report is
    written elsewhere, so the test leaves the checkout as it found it."""
    [command] = [c for c in _commands((REPO / "README.md").read_text()) if c[:1] == ["replay"]]
    out = command.index("--out")
    command[out + 1] = str(tmp_path / "report")
    program = Path(sys.executable).with_name("bandit-router")
    finished = subprocess.run(
        [str(program), *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {"linucb", "random"} <= set(report["policies"])
    assert report["n_test"] == 664  # 30% of the 2,212 prompts held out
