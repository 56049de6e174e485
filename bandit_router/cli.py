"""`bandit-router`: serve the API, migrate the database."""

from __future__ import annotations

import argparse
import ipaddress
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bandit_router.core import PolicySpec
from bandit_router.settings import ConfigError, RouterConfig, Settings, load_config

if TYPE_CHECKING:
    from bandit_router.storage.base import DecisionHistory, DecisionRecord


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, *, has_keys: bool, insecure: bool) -> str | None:
    """Why serving on `host` is refused, or None: beyond loopback, only with keys."""
    if _is_loopback(host) or has_keys or insecure:
        return None
    return (
        f"refusing to serve on {host} without API keys; set api_keys in the config "
        "(or BANDIT_ROUTER_API_KEYS), or pass --insecure"
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

    config = load_config(settings.config, extra_api_keys=settings.api_keys)
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
    try:
        config = _config(settings)
    except ConfigError as error:
        print(f"bandit-router: {error}", file=sys.stderr)
        return 2
    refusal = bind_refusal(args.host, has_keys=bool(config.api_keys), insecure=args.insecure)
    if refusal:
        print(f"bandit-router: {refusal}", file=sys.stderr)
        return 2
    import uvicorn

    from bandit_router.main import create_app
    from bandit_router.migrations import upgrade

    upgrade(settings.database_url)
    uvicorn.run(
        create_app(settings, config, learner_mode=args.learner),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        loop=args.loop,
        http=args.http,
    )
    return 0


def _learner(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        config = _config(settings)
    except ConfigError as error:
        print(f"bandit-router: {error}", file=sys.stderr)
        return 2
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


def _non_negative(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number ≥ 0")
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


def _replay(args: argparse.Namespace) -> int:
    from bandit_router.simulator.outcomes import OutcomeTableError, holdout_split, load_outcomes
    from bandit_router.simulator.progress import Progress
    from bandit_router.simulator.report import (
        DEFAULT_COST_WEIGHTS,
        build_report,
        default_policy_names,
        planned_runs,
        write_report,
    )

    names = args.policy or default_policy_names()
    if args.max_attempts is not None and args.grader_error is None:
        print(
            "bandit-router replay: --max-attempts applies to cascades only; give --grader-error",
            file=sys.stderr,
        )
        return 2
    try:
        policy_params = _configured_params(names, args.config)
        train = load_outcomes(args.train)
        test = load_outcomes(args.test) if args.test else None
        if args.holdout is not None:
            if test is not None:
                raise ValueError("give --test or --holdout, not both")
            train, test = holdout_split(train, args.holdout, args.split_seed)
        cost_weights = args.cost_weight or DEFAULT_COST_WEIGHTS
        progress = Progress(
            planned_runs(names, cost_weights, args.seeds, cascades=args.grader_error is not None)
        )
        result = build_report(
            train,
            test,
            policy_names=names,
            cost_weights=cost_weights,
            seeds=args.seeds,
            progress=progress,
            grader_error=args.grader_error,
            max_attempts=args.max_attempts,
            policy_params=policy_params,
        )
        progress.close()
    except (OutcomeTableError, ValueError, ConfigError) as error:
        print(f"bandit-router replay: {error}", file=sys.stderr)
        return 2
    written = write_report(result, args.out)
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def _chain_reward(store: DecisionHistory, decision: DecisionRecord) -> float | None:
    """What an escalated decision learned: its chain's return from it on (escalation.py), at
    its own λ; None while a later attempt has no graded feedback."""
    from bandit_router.core import Outcome
    from bandit_router.escalation import graded_returns
    from bandit_router.storage.base import first_graded

    graded = [first_graded(feedback) for _, feedback in store.chain_attempts(decision.chain)]
    learned = graded_returns(
        [None if f is None else Outcome(f.quality or 0.0, f.cost_usd) for f in graded]
    )
    index = decision.attempt - 1
    return learned[index].reward(decision.cost_weight) if index < len(learned) else None


def _export_log(args: argparse.Namespace) -> int:
    """Writes every decision as a JSON line (API.md), with its first scored feedback."""
    from datetime import UTC, datetime, timedelta

    import orjson

    from bandit_router.storage.base import first_graded, window_cursor_of
    from bandit_router.storage.sql import SqlStore

    store = SqlStore(_settings(args).database_url)
    written = 0
    try:
        with open(args.out, "wb") as out:
            cursor = None
            end = datetime.now(UTC) + timedelta(days=1)
            while batch := store.closed_decisions(cursor, end, 1000):
                escalated = store.escalated([decision.id for decision, _ in batch])
                for decision, feedback in batch:
                    scored = first_graded(feedback)
                    chain_reward = None if scored is None else scored.reward
                    if decision.id in escalated and scored is not None:
                        chain_reward = _chain_reward(store, decision)
                    line = {
                        "decision_id": decision.id,
                        "ts": decision.created_at.isoformat(),
                        "policy": decision.policy,
                        "policy_version": decision.policy_version,
                        "experiment": decision.experiment,
                        "variant": decision.variant,
                        "features": decision.features,
                        "eligible": list(decision.eligible),
                        "model": decision.model,
                        "probability": decision.probability,
                        "cost_weight": decision.cost_weight,
                        "prior_costs": decision.prior_costs,
                        "attempt": decision.attempt,
                        "previous_id": decision.previous_id,
                        "chain_id": decision.chain,
                        # A shadow variant's choice, logged beside the served decision
                        # (its id) and never served: it has no feedback of its own.
                        "shadow_of": decision.shadow_of,
                        "feedback": None
                        if scored is None
                        else {
                            "quality": scored.quality,
                            "cost_usd": scored.cost_usd,
                            "latency_ms": scored.latency_ms,
                            "reward": scored.reward,
                            "chain_reward": chain_reward,
                        },
                    }
                    out.write(orjson.dumps(line) + b"\n")
                    written += 1
                cursor = window_cursor_of(batch[-1][0])
    finally:
        store.close()
    print(f"wrote {written} decisions to {args.out}", file=sys.stderr)
    return 0


def _configured_params(
    names: Sequence[str], config: Path | None
) -> Mapping[str, Mapping[str, float | int | str | Sequence[str]]]:
    """The [policies.NAME] sections of a service configuration (none without one), each named
    policy built once with them, so a bad name or parameter is a ValueError naming its key."""
    from bandit_router import policies

    policy_params = {} if config is None else load_config(config).policy_params
    for name in names:
        spec = PolicySpec.configured(name, policy_params)
        try:
            policies.build(spec)
        except ValueError as error:
            if not spec.params:
                raise
            raise ValueError(f"{config}: policies.{spec.section}: {error}") from error
    return policy_params


def _ope(args: argparse.Namespace) -> int:
    import orjson

    from bandit_router import policies
    from bandit_router.ope import (
        LogError,
        Logs,
        Matrix,
        estimate,
        parse_log_line,
        probabilities_of,
        reward_model,
        target_probabilities,
    )

    def probabilities(logs: Logs, spec: PolicySpec) -> Matrix:
        """A frozen snapshot of the spec's learning policy when a database is given (of the
        configured policy with --config, else the newest of any), else the policy as the
        registry builds it with the spec's parameters."""
        if args.database_url and spec.name in policies.LEARNING_POLICIES:
            from bandit_router.storage.sql import SqlStore

            store = SqlStore(args.database_url)
            try:
                key = spec.key() if args.config else None
                snapshot = store.latest_snapshot(spec.name, key)
            finally:
                store.close()
            if snapshot is None:
                configured = f" as {spec.key()}" if key else ""
                raise ValueError(f"no snapshot of {spec.name!r}{configured} in the database")
            return probabilities_of(logs, policies.loads(spec.name, snapshot.state).choose)
        return target_probabilities(logs, spec.name, spec.params)

    try:
        rows = []
        with open(args.log, "rb") as log:
            for number, line in enumerate(log, start=1):
                if line.strip():
                    row = parse_log_line(line, f"{args.log}:{number}")
                    if row is not None:
                        rows.append(row)
        logs = Logs.of(rows)
        names = args.policy or [f"fixed:{m}" for m in logs.models] + ["random", "cheapest"]
        policy_params = _configured_params(names, args.config)
        specs = [PolicySpec.configured(name, policy_params) for name in names]
        predicted = reward_model(logs)
        report = {
            "n": len(logs),
            "policies": {
                spec.name: estimate(
                    logs,
                    probabilities(logs, spec),
                    predicted,
                    bootstrap=args.bootstrap,
                    seed=args.seed,
                )
                for spec in specs
            },
        }
    except OSError as error:
        print(f"bandit-router ope: cannot read {args.log}: {error.strerror}", file=sys.stderr)
        return 2
    except (LogError, ValueError, ConfigError) as error:
        print(f"bandit-router ope: {error}", file=sys.stderr)
        return 2
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2)
    if args.out:
        Path(args.out).write_bytes(text)
    else:
        sys.stdout.write(text.decode() + "\n")
    return 0


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
    replay.add_argument("--out", type=Path, default=Path("replay-report"))
    replay.set_defaults(handler=_replay)

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
    ope.set_defaults(handler=_ope)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply the migrations (Alembic)")
    upgrade.add_argument("--database-url")
    upgrade.add_argument("--revision", default="head")
    upgrade.set_defaults(handler=_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
