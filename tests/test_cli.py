"""The command line: serve's safety checks, db upgrade, and a clean shutdown's snapshot."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect

from bandit_router.cli import bind_refusal, main
from bandit_router.storage.sql import SqlStore
from tests.support import ServerProcess


def test_serve_refuses_a_public_bind_without_an_admin_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "unused.db"
    serve = ["serve", "--host", "0.0.0.0", "--database-url", f"sqlite:///{database}"]
    assert main(serve) == 2
    assert "refusing to serve on 0.0.0.0 without an admin key" in capsys.readouterr().err
    # Client and metrics keys alone are not enough: the rule asks for an admin key, the one
    # that proves whoever deploys it has decided who administers the service.
    monkeypatch.setenv("BANDIT_ROUTER_CLIENT_KEYS", "a-client-key")
    monkeypatch.setenv("BANDIT_ROUTER_METRICS_KEYS", "a-metrics-key")
    assert main(serve) == 2
    assert "without an admin key" in capsys.readouterr().err
    assert not database.exists()


@pytest.mark.parametrize(
    ("host", "has_admin_key", "insecure", "refused"),
    [
        ("127.0.0.1", False, False, False),
        ("localhost", False, False, False),
        ("::1", False, False, False),
        ("0.0.0.0", False, False, True),
        ("10.1.2.3", False, False, True),
        ("0.0.0.0", True, False, False),
        ("0.0.0.0", False, True, False),
    ],
)
def test_bind_policy(host: str, has_admin_key: bool, insecure: bool, refused: bool) -> None:
    assert (
        bind_refusal(host, has_admin_key=has_admin_key, insecure=insecure) is not None
    ) == refused


def test_serve_reports_a_bad_config_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "pool.toml"
    config.write_text("[router]\npolicy = 3\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert "pool.toml" in capsys.readouterr().err


def test_db_upgrade_creates_the_schema(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "--database-url", database_url]) == 0
    store = SqlStore(database_url)
    assert "feedback" in inspect(store.engine).get_table_names()
    store.close()


def test_sigterm_snapshots_the_policy_before_exit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'router.db'}"
    server = ServerProcess(url, None, tmp_path / "server.log")
    with httpx.Client(base_url=server.base_url) as client:
        for _ in range(3):
            decision = client.post("/route", json={"prompt": "Summarize this text."}).json()
            client.post("/feedback", json={"decision_id": decision["decision_id"], "quality": 1})
    server.stop()
    # uvicorn shuts down cleanly, then re-raises the SIGTERM it caught.
    assert server.process.returncode in (0, -15)
    store = SqlStore(url)
    from bandit_router.settings import load_config

    snapshot = store.latest_snapshot("linucb", load_config().policy.key())
    store.close()
    assert snapshot is not None
    assert snapshot.version == 3


def test_database_url_and_config_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "from-env.db"
    monkeypatch.setenv("BANDIT_ROUTER_DATABASE_URL", f"sqlite:///{database}")
    assert main(["db", "upgrade"]) == 0
    assert database.exists()
    config = tmp_path / "broken.toml"
    config.write_text("not toml [")
    monkeypatch.setenv("BANDIT_ROUTER_CONFIG", str(config))
    assert main(["serve"]) == 2
    assert "broken.toml is not valid TOML" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("policy_lines", "reason"),
    [
        ('policy = "nope"', "unknown policy 'nope'"),
        ('policy = "vw"\n[policies.vw]\nexploration = "ucb"', "exploration must be one of"),
        ('[policies.linucb]\nfeatures = "task_type"', "features must be a list of feature names"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "learner"])
def test_a_bad_policy_stops_serve_and_learner_with_the_reason(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    policy_lines: str,
    reason: str,
) -> None:
    config = tmp_path / "pool.toml"
    config.write_text(
        f"[router]\n{policy_lines}\n\n[[models]]\nname = 'a'\nprovider = 'p'\n"
        "input_price_per_mtok = 1\noutput_price_per_mtok = 1\ncontext_window = 1000\n"
    )
    database = tmp_path / "unused.db"
    argv = [command, "--config", str(config), "--database-url", f"sqlite:///{database}"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"{config}: router.policy" in error
    assert reason in error
    assert not database.exists()


@pytest.mark.parametrize(
    ("stack", "loaded"),
    [
        (("--loop", "asyncio", "--http", "h11"), set()),
        (("--loop", "uvloop", "--http", "httptools"), {"uvloop", "httptools"}),
    ],
)
def test_serve_runs_on_the_http_stack_it_is_given(
    tmp_path: Path, stack: tuple[str, ...], loaded: set[str]
) -> None:
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'router.db'}", None, tmp_path / "server.log", extra_args=stack
    )
    try:
        with httpx.Client(base_url=server.base_url) as client:
            decision = client.post("/route", json={"prompt": "Summarize this text."})
            assert decision.status_code == 200
            feedback = client.post(
                "/feedback", json={"decision_id": decision.json()["decision_id"], "quality": 1}
            )
            assert feedback.status_code == 202
        # The compiled parser and loop show in the process's memory map once imported.
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert {name for name in ("uvloop", "httptools") if f"/{name}/" in maps} == loaded
    finally:
        server.stop()


def test_serve_refuses_an_unknown_http_stack(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--http", "fast"])
    assert exited.value.code == 2
    assert "argument --http: invalid choice: 'fast'" in capsys.readouterr().err
