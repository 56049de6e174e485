"""The dashboard in a real browser: headless Chromium (Debian's, driven by Playwright's Python
API) against a running service with data in it. It logs in with a key, finds no console
error, the charts drawn, and the headline savings equal to GET /report's; the offline report
page opens with every network request refused. `make test` installs Chromium when missing."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

from bandit_router.cli import main
from tests.support import ServerProcess

KEY = "dashboard-admin-key"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[1] / "var" / "screenshots"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: `make test` installs it (chromium)"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 1600},
        )
        try:
            yield context
        finally:
            context.close()


def _traffic(base_url: str) -> None:
    """Requests of two task types over the pool, each graded, with cost and latency."""
    rng = random.Random(3)
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        for index in range(80):
            task = ("code", "chat")[index % 2]
            routed = client.post(
                "/route", json={"prompt": f"request {index}", "task_type": task, "cost_weight": 5}
            )
            assert routed.status_code == 200, routed.text
            fed = client.post(
                "/feedback",
                json={"decision_id": routed.json()["decision_id"],
                      "quality": round(rng.uniform(0.3, 1.0), 2),
                      "cost_usd": rng.uniform(0.0001, 0.002), "latency_ms": rng.uniform(200, 2000)},
            )  # fmt: skip
            assert fed.status_code == 202, fed.text


def _drawn(page: Page) -> dict[str, Any]:
    """What the page shows: fails unless the headline and the charts are there."""
    page.wait_for_selector("#savings", timeout=10_000)
    points = page.locator("svg circle.point").count()
    bars = page.locator("svg rect.bar").count()
    assert points > 0, "no chart has a data point"
    assert bars > 0, "no bar is drawn"
    savings = page.locator("#savings")
    return {
        "value": float(savings.get_attribute("data-value") or "nan"),
        "text": savings.inner_text(),
        "points": points,
        "bars": bars,
    }


def test_the_dashboard_shows_the_report_in_a_browser(
    browser: BrowserContext, server_factory: type[ServerProcess], sqlite_url: str, tmp_path: Path
) -> None:
    server = server_factory(
        sqlite_url, None, tmp_path / "server.log", extra_env={"BANDIT_ROUTER_ADMIN_KEYS": KEY}
    )
    _traffic(server.base_url)
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto(f"{server.base_url}/dashboard")
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#key", KEY)
    page.click("#login button[type=submit]")
    shown = _drawn(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

    report = httpx.get(
        f"{server.base_url}/report", headers={"Authorization": f"Bearer {KEY}"}
    ).json()
    assert shown["value"] == report["savings_usd"]
    assert shown["text"] == f"${report['savings_usd']:,.4f}"
    assert report["decisions"] == 80
    for section in ("Model health and breakers", "Budgets and pacing", "Experiments",
                    "What the policies have learned", "Traffic share per model"):  # fmt: skip
        assert page.get_by_role("heading", name=section).count() == 1, section
    # The key stays in the tab's session storage and in headers, never in a URL.
    assert page.evaluate("sessionStorage.getItem('bandit_router.key')") == KEY
    assert KEY not in page.url
    assert problems == []

    # A blank page fails the same checks.
    blank = browser.new_page()
    blank.goto("about:blank")
    with pytest.raises(Exception, match="Timeout"):
        _drawn(blank)


def test_the_offline_report_page_opens_without_network(
    browser: BrowserContext, sqlite_url: str, server_factory: type[ServerProcess], tmp_path: Path
) -> None:
    server = server_factory(
        sqlite_url, None, tmp_path / "server.log", extra_env={"BANDIT_ROUTER_ADMIN_KEYS": KEY}
    )
    _traffic(server.base_url)
    out = tmp_path / "report.html"
    assert main(["report", "--database-url", sqlite_url, "--out", str(out)]) == 0
    page = browser.new_page()
    requested: list[str] = []

    def refuse(route: Any) -> None:
        requested.append(route.request.url)
        route.abort()

    page.route("http*://**/*", refuse)
    page.goto(out.as_uri())
    shown = _drawn(page)
    page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
    assert requested == []
    assert shown["points"] > 0
