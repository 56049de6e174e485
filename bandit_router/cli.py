"""`bandit-router`: serve the API, migrate the database."""

from __future__ import annotations

import argparse
import ipaddress
import math
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bandit_router import offline_cli
from bandit_router.settings import ConfigError, RouterConfig, Settings, load_config


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, *, has_admin_key: bool, insecure: bool) -> str | None:
    """Why serving on `host` is refused, or None: beyond loopback, only with an admin key
    (without one, the service is open: every caller could change the pool and the rules)."""
    if _is_loopback(host) or has_admin_key or insecure:
        return None
    return (
        f"refusing to serve on {host} without an admin key; configure one ([keys.NAME] with "
        'role = "admin" in the config, or BANDIT_ROUTER_ADMIN_KEYS), or pass --insecure'
    )


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    updates: dict[str, object] = {}
    if getattr(args, "database_url", None):
        updates["database_url"] = args.database_url
    if getattr(args, "config", None):
        updates["config"] = args.config
    return settings.model_copy(update=updates)


def _config(settings: Settings) -> RouterConfig:
    """The configuration, with its policy built once so a bad name or parameter stops the
    command with the reason instead of failing the server's start-up."""
    from bandit_router import policies

    config = load_config(settings.config, environment_keys=settings.keys_by_role())
    for where, spec in [
        ("router.policy", config.policy),
        *(("router.policies", spec) for spec in config.extra_policies),
    ]:
        try:
            policies.build(spec)
        except ValueError as error:  # UnknownPolicy is one
            source = settings.config or "the default configuration"
            raise ConfigError(f"{source}: {where} {spec.name!r}: {error}") from error
    return config


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    config = _config(settings)
    has_admin_key = any(key.role == "admin" for key in config.keys)
    refusal = bind_refusal(args.host, has_admin_key=has_admin_key, insecure=args.insecure)
    if refusal:
        print(f"bandit-router: {refusal}", file=sys.stderr)
        return 2
    import uvicorn

    from bandit_router.main import LearnerLeaseTaken, create_app, embedded_lease
    from bandit_router.migrations import upgrade

    upgrade(settings.database_url)
    lease = None
    if args.learner == "embedded":
        try:
            lease = embedded_lease(settings.database_url)
        except LearnerLeaseTaken as error:
            print(f"bandit-router: {error}", file=sys.stderr)
            return 2
    app = create_app(settings, config, learner_mode=args.learner, lease=lease)
    _exit_cleanly_after_a_stop_signal()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        loop=args.loop,
        http=args.http,
        timeout_graceful_shutdown=args.graceful_timeout,
    )
    return 0


def _exit_cleanly_after_a_stop_signal() -> None:
    """SIGTERM or SIGINT while serving: uvicorn stops accepting, lets the requests in flight
    finish (at most ``--graceful-timeout`` seconds), runs the app's shutdown (the decision log
    written, the last snapshot taken), then raises the signal again with the handlers it found
    at start. These handlers make that last step an exit with status 0, since the stop was the
    one asked for; a signal before uvicorn has taken over stops the start the same way."""

    def stopped(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stopped)


def _learner(args: argparse.Namespace) -> int:
    settings = _settings(args)
    config = _config(settings)
    from bandit_router.main import run_learner_process
    from bandit_router.migrations import upgrade

    upgrade(settings.database_url)
    run_learner_process(settings, config)
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from bandit_router.migrations import upgrade

    settings = _settings(args)
    upgrade(settings.database_url, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def _db_prune(args: argparse.Namespace) -> int:
    settings = _settings(args)
    config = _config(settings)
    return offline_cli.prune_log(settings.database_url, config, args.days, dry_run=args.dry_run)


def _export_log(args: argparse.Namespace) -> int:
    return offline_cli.export_log(_settings(args).database_url, args.out)


def _report(args: argparse.Namespace) -> int:
    settings = _settings(args)
    args.database_url, args.config = settings.database_url, settings.config
    from bandit_router import report_cli

    return report_cli.report(args)


def _non_negative(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number ≥ 0")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number > 0")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction strictly between 0 and 1")
    return value


def _grader_error(text: str) -> float:
    from bandit_router.simulator.cascade import check_grader_error

    try:
        return check_grader_error(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability in [0, 0.5)") from None


def _attempts(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ≥ 2 (a cascade)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bandit-router", description="A contextual-bandit router for LLM requests."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate the database, then serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--database-url", help="default: BANDIT_ROUTER_DATABASE_URL or SQLite")
    serve.add_argument("--config", type=Path, help="TOML file (default: the packaged pool)")
    serve.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback bind without API keys"
    )
    serve.add_argument(
        "--graceful-timeout",
        type=_non_negative,
        default=20.0,
        metavar="S",
        help="on SIGTERM, seconds the requests in flight may take to finish before they are "
        "cancelled (default 20)",
    )
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    # uvicorn's own choices: auto takes uvloop and httptools when they are installed.
    serve.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    serve.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto")
    serve.add_argument(
        "--learner",
        choices=("embedded", "none"),
        default="embedded",
        help="none: only route and record; a separate `bandit-router learner` learns",
    )
    serve.set_defaults(handler=_serve)

    learner = commands.add_parser(
        "learner",
        help="learn from the shared logs and publish policy snapshots for every serve process",
    )
    learner.add_argument("--database-url", help="default: BANDIT_ROUTER_DATABASE_URL or SQLite")
    learner.add_argument("--config", type=Path, help="TOML file (default: the packaged pool)")
    learner.set_defaults(handler=_learner)

    replay = commands.add_parser(
        "replay", help="replay policies over an outcome table; writes report.json and report.md"
    )
    replay.add_argument("--train", type=Path, required=True, help="outcome table (CSV or .gz)")
    replay.add_argument("--test", type=Path, help="held-out table scored by the frozen policy")
    replay.add_argument(
        "--holdout",
        type=_fraction,
        help="hold out this share of the train prompts (seeded) as the test table",
    )
    replay.add_argument("--split-seed", type=int, default=0, help="seed of the --holdout split")
    replay.add_argument("--policy", action="append", help="repeatable; default: every learner")
    replay.add_argument(
        "--config",
        type=Path,
        help="a service configuration whose [policies.NAME] sections set the replayed "
        "policies' parameters (default: each policy's own defaults)",
    )
    replay.add_argument("--cost-weight", type=_non_negative, action="append", help="repeatable λ")
    replay.add_argument("--seeds", type=int, default=1, choices=range(1, 1001), metavar="N")
    replay.add_argument(
        "--grader-error",
        type=_grader_error,
        metavar="E",
        help="also replay each learning policy as cascades (NAME+escalate), escalating on the "
        "grades of a simulated grader that errs with probability E in [0, 0.5)",
    )
    replay.add_argument(
        "--max-attempts",
        type=_attempts,
        metavar="N",
        help="attempts per cascade, ≥ 2 (default: the service's, 2); needs --grader-error",
    )
    replay.add_argument(
        "--scenario",
        type=Path,
        metavar="FILE",
        help="a drift scenario (TOML): a seeded stream whose world changes part-way",
    )
    replay.add_argument("--out", type=Path, default=Path("replay-report"))
    replay.set_defaults(handler=offline_cli.replay)

    export = commands.add_parser("export-log", help="write the decision log as JSON lines")
    export.add_argument("--database-url", help="default: BANDIT_ROUTER_DATABASE_URL or SQLite")
    export.add_argument("--out", type=Path, required=True)
    export.set_defaults(handler=_export_log)

    ope = commands.add_parser(
        "ope", help="off-policy estimates (IPS, SNIPS, DM, DR) of policies from a decision log"
    )
    ope.add_argument("--log", type=Path, required=True, help="JSON lines, as export-log writes")
    ope.add_argument(
        "--policy", action="append", help="repeatable; default: fixed:MODEL for each model"
    )
    ope.add_argument(
        "--config",
        type=Path,
        help="a service configuration whose [policies.NAME] sections set the evaluated "
        "policies' parameters; with --database-url, the snapshot of that configuration is read",
    )
    ope.add_argument("--out", type=Path, help="default: standard output")
    ope.add_argument("--bootstrap", type=int, default=200, choices=range(10, 10_001), metavar="B")
    ope.add_argument("--seed", type=int, default=0)
    ope.add_argument(
        "--database-url",
        help="evaluate learning policies (linucb, vw) as their latest snapshot there",
    )
    ope.set_defaults(handler=offline_cli.ope)

    report = commands.add_parser(
        "report", help="the savings report (GET /report) from a database, as JSON or HTML"
    )
    report.add_argument("--database-url", help="default: BANDIT_ROUTER_DATABASE_URL or SQLite")
    report.add_argument("--config", type=Path, help="TOML file (default: the packaged pool)")
    report.add_argument("--since", help="ISO 8601 or a duration before now (7d); default 7d")
    report.add_argument("--until", help="ISO 8601 or a duration before now; default now")
    report.add_argument("--baseline", help="a model (default: the most expensive)")
    report.add_argument("--bucket", help="the timeline's bucket (15m, 1h, 1d); default: auto")
    for name in ("--tenant", "--task-type", "--experiment"):
        report.add_argument(name, help="only these decisions")
    report.add_argument("--out", type=Path, help="report.html or report.json (default: stdout)")
    report.set_defaults(handler=_report)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply the migrations (Alembic)")
    upgrade.add_argument("--database-url")
    upgrade.add_argument("--revision", default="head")
    upgrade.set_defaults(handler=_db_upgrade)
    prune = db_commands.add_parser(
        "prune",
        help="remove the decisions (with their feedback) older than [retention] decisions_days "
        "that no learner still needs",
    )
    prune.add_argument("--database-url", help="default: BANDIT_ROUTER_DATABASE_URL or SQLite")
    prune.add_argument("--config", type=Path, help="TOML file (default: the packaged pool)")
    prune.add_argument(
        "--days", type=_positive, help="the period kept (default: [retention] decisions_days)"
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="print what would be removed, remove nothing"
    )
    prune.set_defaults(handler=_db_prune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as error:  # a bad configuration stops every command the same way
        print(f"bandit-router: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
