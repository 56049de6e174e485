"""The composition root: builds the store, the decision log, the learner, the router, the app.

`uvicorn --factory bandit_router.main:create_app` serves it with settings from the environment;
`bandit-router serve` does the same after migrating the database.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bandit_router import api
from bandit_router.learner import Learner
from bandit_router.router import Router, RouterOptions
from bandit_router.settings import RouterConfig, Settings, load_config
from bandit_router.storage.log_writer import GroupCommitLog, TickCommitLog
from bandit_router.storage.sql import SqlStore


def create_app(settings: Settings | None = None, config: RouterConfig | None = None) -> FastAPI:
    """Nothing touches the database until the app starts (its lifespan)."""
    settings = settings or Settings()
    config = config or load_config(settings.config, extra_api_keys=settings.api_keys)
    store = SqlStore(settings.database_url)
    decision_log = TickCommitLog(store) if store.is_sqlite else GroupCommitLog(store)
    learner = Learner(store, [config.policy], snapshot_every=config.snapshot_every)
    router = Router(
        store=store,
        decision_log=decision_log,
        policies=learner,
        models=config.models,
        options=RouterOptions(
            policy=config.policy.name,
            default_cost_weight=config.cost_weight,
            expected_output_tokens=config.expected_output_tokens,
            max_prompt_bytes=config.max_prompt_bytes,
        ),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        store.upsert_models(config.models)
        router.set_models(store.list_models())
        learner.restore()
        decision_log.start()
        store.start_maintenance()
        learner.start_periodic_snapshots(config.snapshot_interval_s)
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
            decision_log.stop()
            learner.stop()
            store.close()

    return api.create_app(router, api_keys=config.api_keys, lifespan=lifespan)
