"""The composition root: builds the store, the decision log, the learner, the router, the app.

`uvicorn --factory bandit_router.main:create_app` serves it with settings from the environment;
`bandit-router serve` does the same after migrating the database.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal, cast

from fastapi import FastAPI

from bandit_router import api, retention
from bandit_router.budget import Budget, Pacer
from bandit_router.core import PolicySpec
from bandit_router.eligibility import Rules, TenantTier
from bandit_router.experiments import Experiment
from bandit_router.gateway.endpoints import gateway_routes
from bandit_router.gateway.grader import Grader
from bandit_router.gateway.proxy import Gateway
from bandit_router.health import BreakerSettings, HealthBoard
from bandit_router.keys import KeyRing
from bandit_router.leadership import run_learner
from bandit_router.learner import (
    Aggregation,
    Learner,
    Periodic,
    RewardRules,
    SnapshotFollower,
    utc_now,
)
from bandit_router.retention import Pruner
from bandit_router.router import Router, RouterOptions
from bandit_router.settings import ConfigError, RouterConfig, Settings, load_config
from bandit_router.storage.log_writer import (
    GroupCommitFeedbackLog,
    GroupCommitLog,
    Record,
    TickCommitLog,
    WriteBatch,
)
from bandit_router.storage.sql import SqlStore
from bandit_router.storage.sql_lease import SqlLearnerLease, process_name

LearnerMode = Literal["embedded", "none"]


def reward_rules(config: RouterConfig) -> RewardRules:
    return RewardRules(
        wait_s=config.reward_wait_s,
        default_reward=config.default_reward,
        aggregation=cast(Aggregation, config.aggregation),
        settle_s=config.settle_s,
    )


def _served(config: RouterConfig) -> list[PolicySpec]:
    return [config.policy, *config.extra_policies]


def _pruning(store: SqlStore, config: RouterConfig, lease: SqlLearnerLease | None) -> Pruner | None:
    """The background prune of the process that learns (it runs while it holds the lease)."""
    rules = retention.rules_of(config)
    if rules is None:
        return None
    return Pruner(store, _served(config), rules, clock=utc_now, lease=lease)


def _learner(store: SqlStore, config: RouterConfig) -> Learner:
    rules = reward_rules(config)
    return Learner(
        store,
        _served(config),
        rules={spec.name: rules for spec in _served(config)},
        snapshot_every=config.snapshot_every,
        learns_before_answer=store.is_sqlite,
    )


class LearnerLeaseTaken(RuntimeError):
    """An embedded learner's database already has a learner."""


def embedded_lease(database_url: str) -> SqlLearnerLease:
    """The lease an embedded learner (``serve --learner embedded``) needs before it learns;
    LearnerLeaseTaken, saying who holds it and what to do, when another learner does."""
    lease = SqlLearnerLease(database_url, process_name("serve"))
    if not lease.acquire():
        holder = lease.holder() or "another learner"
        lease.close()
        raise LearnerLeaseTaken(
            f"{holder} already learns from this database (it holds the learner lease): an "
            "embedded learner would learn every outcome a second time. Serve with "
            "--learner none to serve that learner's snapshots, or stop it first"
        )
    return lease


def create_app(
    settings: Settings | None = None,
    config: RouterConfig | None = None,
    *,
    learner_mode: LearnerMode = "embedded",
    lease: SqlLearnerLease | None = None,
) -> FastAPI:
    """Nothing touches the database until the app starts (its lifespan).

    ``learner_mode="none"``: this process only routes and records; it serves the snapshots a
    separate ``bandit-router learner`` publishes, loading each new one as it appears.
    ``"embedded"`` learns in this process, once it holds the database's learner ``lease``
    (taken at start when none is given): on PostgreSQL, the start fails when another
    learner holds it (embedded_lease).
    """
    settings = settings or Settings()
    config = config or load_config(settings.config, environment_keys=settings.keys_by_role())
    store = SqlStore(settings.database_url)
    decision_log = _commit_log(store, store.insert_decisions, "decision log")
    feedback_log = None if store.is_sqlite else GroupCommitFeedbackLog(store)
    learner: Learner | SnapshotFollower = (
        _learner(store, config)
        if learner_mode == "embedded"
        else SnapshotFollower(
            store,
            _served(config),
            rules={spec.name: reward_rules(config) for spec in _served(config)},
        )
    )
    try:
        breakers = BreakerSettings(**config.health)  # type: ignore[arg-type]
    except ValueError as error:
        raise ConfigError(f"health: {error}") from error
    pacer = Pacer(
        budgets={scope: Budget(scope, **values) for scope, values in config.budgets.items()}
    )
    router = Router(
        store=store,
        health=HealthBoard(breakers),
        pacer=pacer,
        decision_log=decision_log,
        feedback_log=feedback_log,
        policies=learner,
        models=config.models,
        options=RouterOptions(
            policy=config.policy.name,
            default_cost_weight=config.cost_weight,
            expected_output_tokens=config.expected_output_tokens,
            max_prompt_bytes=config.max_prompt_bytes,
            new_model_share=config.new_model_share,
            new_model_outcomes=config.new_model_outcomes,
            max_attempts=config.max_attempts,
            default_experiment=config.default_experiment,
            tenant_tiers={
                name: TenantTier(**values) for name, values in config.tenant_tiers.items()
            },
        ),
    )

    # The grader's workers run on this process's event loop, off the request path; its
    # queue is in the database, so jobs outlive the process (gateway/grader.py). A sampled
    # answer waits for its job's commit, batched as the decisions are.
    grading_log = None
    grader = None
    if config.grader is not None:
        grading_log = _commit_log(store, store.enqueue_gradings, "grading queue")
        grader = Grader(router, store, config.grader, grading_log=grading_log)
    gateway = Gateway(router, config.upstreams, config.gateway, grader=grader)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        store.upsert_models(config.models)
        router.catalog.set_models(store.list_models())
        # The file's rules win at start when it has any; otherwise the stored ones stay.
        if config.rules and Rules.from_document(config.rules):
            router.catalog.set_rules(Rules.from_document(config.rules))
        for document in config.experiments:  # the file wins for the experiments it names
            experiment = Experiment.from_document(document)
            if not store.save_experiment(experiment.to_document(), create=True):
                store.save_experiment(experiment.to_document(), create=False)
        router.catalog.reload()
        held = lease
        if isinstance(learner, Learner) and held is None:
            held = embedded_lease(settings.database_url)
        learner.restore()
        decision_log.start()
        if feedback_log is not None:
            feedback_log.start()
        if grading_log is not None:
            grading_log.start()
        store.start_maintenance()
        pruner = None
        if isinstance(learner, Learner):
            learner.start(snapshot_interval_s=config.snapshot_interval_s, lease=held)
            pruner = _pruning(store, config, held)
        else:
            learner.start()
        pruning = (
            None
            if pruner is None
            else Periodic(config.retention_interval_s, pruner.run_once, "retention")
        )
        pool_watch = Periodic(1.0, router.catalog.reload, "pool-watch")
        await gateway.start()  # its one pooled httpx client
        if grader is not None:
            await grader.start(gateway.http)
        # What start-up allocated lives as long as the process: moving it out of the
        # collector's generations keeps full collections short under load. A request makes
        # a few hundred short-lived objects and no cycles worth chasing, so the youngest
        # generation is collected every 20,000 allocations rather than every 700.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        try:
            yield
        finally:
            if grader is not None:
                await grader.stop()
            await gateway.close()
            if pruner is not None and pruning is not None:
                pruner.stop()
                pruning.stop()
            pool_watch.stop()
            decision_log.stop()
            if grading_log is not None:
                grading_log.stop()
            if feedback_log is not None:
                feedback_log.stop()  # before the learner's last catch-up and snapshot
            learner.stop()
            if held is not None:
                held.close()
            store.close()

    app = api.create_app(
        router,
        keys=KeyRing(config.keys),
        audit=store,
        lifespan=lifespan,
        report=store,
        expected_output_tokens=config.expected_output_tokens,
    )
    app.include_router(gateway_routes(gateway))
    app.state.policies = learner  # what this process serves (and learns), for its tests
    return app


def _commit_log(
    store: SqlStore, write: WriteBatch[Record], name: str
) -> TickCommitLog[Record] | GroupCommitLog[Record]:
    """Appends that wait for their commit, shared by concurrent requests (log_writer.py): on
    SQLite at the end of each event-loop turn, on PostgreSQL in a writer thread."""
    return TickCommitLog(write, name) if store.is_sqlite else GroupCommitLog(write, name)


def run_learner_process(settings: Settings, config: RouterConfig) -> None:
    """``bandit-router learner``: learns from the shared logs and publishes snapshots until
    SIGINT or SIGTERM, while it holds the database's learner lease (leadership.py); it
    stands by while another learner does."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    store = SqlStore(settings.database_url)
    lease = SqlLearnerLease(settings.database_url, process_name("learner"))
    learner = _learner(store, config)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    pruner = _pruning(store, config, lease)
    pruning = (
        None
        if pruner is None
        else Periodic(config.retention_interval_s, pruner.run_once, "retention")
    )
    try:
        run_learner(learner, stop, lease)
    finally:
        if pruner is not None and pruning is not None:
            pruner.stop()
            pruning.stop()
        lease.close()
        store.close()
