"""`bandit-router report`: the same report offline, as JSON or a page that needs no network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bandit_router.cli import main
from bandit_router.main import create_app
from bandit_router.settings import Settings, config_from_mapping
from tests.test_api import POOL


def _log(url: str) -> None:
    config = config_from_mapping({"models": POOL})
    with TestClient(create_app(Settings(database_url=url), config)) as client:
        for index, (model, task) in enumerate(
            [("cloud-mini", "code"), ("cloud-large", "chat"), ("local-small", "code")]
        ):
            routed = client.post(
                "/route", json={"prompt": "hi", "candidates": [model], "task_type": task}
            ).json()
            fed = client.post(
                "/feedback",
                json={"decision_id": routed["decision_id"], "quality": 0.5 + 0.2 * index,
                      "cost_usd": 0.001 * (index + 1), "latency_ms": 100.0 * (index + 1)},
            )  # fmt: skip
            assert fed.status_code == 202


def test_the_report_as_json_and_as_a_self_contained_page(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _log(sqlite_url)
    assert main(["report", "--database-url", sqlite_url, "--since", "1h"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["decisions"], printed["spend_usd"]) == (3, pytest.approx(0.006))
    assert printed["baseline"]["model"] == "cloud-large"

    page = tmp_path / "report.html"
    as_json = tmp_path / "report.json"
    assert main(["report", "--database-url", sqlite_url, "--out", str(page)]) == 0
    assert main(["report", "--database-url", sqlite_url, "--out", str(as_json)]) == 0
    found = json.loads(as_json.read_text())
    html = page.read_text()
    # The headline is the JSON's, and nothing is fetched: no script, no external reference.
    shown = re.search(r'id="savings" data-value="([^"]+)"', html)
    assert shown is not None
    assert float(shown.group(1)) == found["savings_usd"]
    assert "<script" not in html
    assert not re.search(r"(src|href)=\"?(https?:)?//", html)
    assert html.count('class="point"') > 0
    assert html.count('class="bar"') >= 3


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--since", "later"], "--since: 'later' is neither an ISO 8601 time nor a duration"),
        (["--baseline", "gpt-9"], "--baseline: 'gpt-9' is not a model of the pool"),
        (["--bucket", "1x"], "--bucket: '1x' is not a duration"),
        (["--out", "report.txt"], "must end in .html or .json"),
    ],
)
def test_bad_arguments_exit_2_naming_them(
    sqlite_url: str, arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--database-url", sqlite_url, *arguments]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_database_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    assert main(["report", "--database-url", url]) == 2
    assert f"no database at {url}" in capsys.readouterr().err
    assert not (tmp_path / "absent.db").exists()
