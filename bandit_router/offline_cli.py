"""The offline commands of `bandit-router`: replay, export-log, ope and db prune (report is in
report_cli.py).

They read files or a database and write reports; none serves. ``cli.build_parser`` declares
their arguments, and each handler here imports its engine (the simulator, the estimators, SQL)
only when it runs, so `bandit-router serve` loads none of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bandit_router.core import PolicySpec
from bandit_router.settings import ConfigError, RouterConfig, load_config

if TYPE_CHECKING:
    from datetime import datetime

    from bandit_router.settings import RouterConfig
    from bandit_router.storage.base import DecisionHistory, DecisionRecord


def period_of(oldest: datetime | None, newest: datetime | None) -> dict[str, str | None]:
    """The period a log covers, as the commands print it: its first and last decision's time."""
    return {
        "from": None if oldest is None else oldest.isoformat(),
        "to": None if newest is None else newest.isoformat(),
    }


def prune_log(database_url: str, config: RouterConfig, days: float | None, *, dry_run: bool) -> int:
    """`bandit-router db prune`: the background prune's plan (retention.py), run on demand;
    with ``dry_run``, what it would remove, counted."""
    from datetime import UTC, datetime

    from bandit_router import retention
    from bandit_router.storage.sql import SqlStore

    rules = retention.rules_of(config, days)
    if rules is None:
        print(
            "bandit-router db prune: no period to keep: set [retention] decisions_days in the "
            "configuration, or give --days",
            file=sys.stderr,
        )
        return 2
    store = SqlStore(database_url)
    try:
        plan = retention.plan(store, retention.served(config), rules, datetime.now(UTC))
        if isinstance(plan, str):
            print(f"nothing to prune: {plan}")
            return 0
        count = store.prunable(plan) if dry_run else retention.prune(store, plan, rules)
    finally:
        store.close()
    verb = "would remove" if dry_run else "removed"
    created = ""
    if count.oldest is not None and count.newest is not None:
        created = f", created {count.oldest.isoformat()} to {count.newest.isoformat()}"
    print(
        f"{verb} {count.decisions} decisions and {count.feedback} feedback rows{created}; "
        f"kept: decisions created since {plan.created_before.isoformat()} and any a learner "
        "still needs"
    )
    return 0


def configured_params(
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


def replay(args: argparse.Namespace) -> int:
    """`bandit-router replay`: policies replayed over an outcome table, written as a report."""
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
    if args.scenario is not None:
        return replay_scenario(args, names)
    if args.max_attempts is not None and args.grader_error is None:
        print(
            "bandit-router replay: --max-attempts applies to cascades only; give --grader-error",
            file=sys.stderr,
        )
        return 2
    try:
        policy_params = configured_params(names, args.config)
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
            priors=configured_priors(None if args.config is None else load_config(args.config)),
        )
        progress.close()
    except (OutcomeTableError, ValueError, ConfigError) as error:
        print(f"bandit-router replay: {error}", file=sys.stderr)
        return 2
    written = write_report(result, args.out)
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def replay_scenario(args: argparse.Namespace, names: Sequence[str]) -> int:
    """`bandit-router replay --scenario FILE`: the policies through a drifting world, written
    as report.json's `scenario`, report.md and scenario.png (docs/replay.md)."""
    from bandit_router.simulator.outcomes import OutcomeTableError, load_outcomes
    from bandit_router.simulator.progress import Progress
    from bandit_router.simulator.scenario import ScenarioError, load_scenario
    from bandit_router.simulator.scenario_replay import build_scenario, write_scenario_report

    refused = [
        option
        for option, given in (
            ("--test", args.test),
            ("--holdout", args.holdout is not None),
            ("--grader-error", args.grader_error is not None),
            ("--max-attempts", args.max_attempts is not None),
        )
        if given
    ]
    if refused or len(args.cost_weight or []) > 1:
        problem = f"{refused[0]} does not apply" if refused else "give one --cost-weight"
        print(f"bandit-router replay: with --scenario, {problem}", file=sys.stderr)
        return 2
    try:
        policy_params = configured_params(names, args.config)
        config = None if args.config is None else load_config(args.config)
        cost_weight = (args.cost_weight or [config.cost_weight if config else 20.0])[0]
        priors = configured_priors(config)
        train = load_outcomes(args.train)
        scenario = load_scenario(args.scenario, train)
        progress = Progress(len(names) * args.seeds)
        result = build_scenario(
            train,
            scenario,
            policy_names=names,
            cost_weight=cost_weight,
            seeds=args.seeds,
            policy_params=policy_params,
            priors=priors,
            progress=progress,
        )
        progress.close()
    except (OutcomeTableError, ScenarioError, ValueError, ConfigError) as error:
        print(f"bandit-router replay: {error}", file=sys.stderr)
        return 2
    report = {"train": train.path, "models": list(train.models), "scenario": result.entry}
    written = write_scenario_report(report, result.curves, args.out)
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def configured_priors(config: RouterConfig | None) -> dict[str, float]:
    """The prior_quality of each model of a configuration's pool that declares one."""
    if config is None:
        return {}
    return {m.name: m.prior_quality for m in config.models if m.prior_quality is not None}


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


def export_log(database_url: str, out_path: Path) -> int:
    """`bandit-router export-log`: every decision as a JSON line (docs/experiments.md), with
    its first scored feedback."""
    from datetime import UTC, datetime, timedelta

    import orjson

    from bandit_router.storage.base import first_graded, window_cursor_of
    from bandit_router.storage.sql import SqlStore

    store = SqlStore(database_url)
    written = 0
    first: datetime | None = None
    last: datetime | None = None
    try:
        with open(out_path, "wb") as out:
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
                    first = first or decision.created_at
                    last = decision.created_at
                cursor = window_cursor_of(batch[-1][0])
    finally:
        store.close()
    period = period_of(first, last)
    covers = f", created {period['from']} to {period['to']}," if written else ""
    print(f"wrote {written} decisions{covers} to {out_path}", file=sys.stderr)
    return 0


def ope(args: argparse.Namespace) -> int:
    """`bandit-router ope`: off-policy estimates of policies from an exported decision log."""
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
        policy_params = configured_params(names, args.config)
        specs = [PolicySpec.configured(name, policy_params) for name in names]
        predicted = reward_model(logs)
        times = [row.ts for row in logs.rows if row.ts is not None]
        report = {
            "n": len(logs),
            # The period of the evaluated decisions (null when the log carries no ts).
            "period": period_of(min(times, default=None), max(times, default=None)),
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
