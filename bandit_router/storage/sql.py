"""The Store on SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL in production."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Engine,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Select

from bandit_router.core import ModelSpec
from bandit_router.storage import tables
from bandit_router.storage.base import (
    DecisionRecord,
    FeedbackInsert,
    FeedbackRecord,
    Snapshot,
    StoredFeedback,
)

log = logging.getLogger(__name__)

# Any constant works: it names the lock that makes feedback ids commit in id order.
_FEEDBACK_LOCK_KEY = 0x62616E64


def _plain(value: Any) -> Any:
    """orjson's fallback for the read-only mappings a record may hold."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def _dump_json(value: Any) -> str:
    # orjson: a decision's ~60 floats take it about 2 µs, where the standard library needs 45.
    return orjson.dumps(value, default=_plain).decode()


def make_engine(url: str) -> Engine:
    """An engine with SQLite set up for a service: WAL, a busy timeout, foreign keys."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[1] if "///" in url else ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=_dump_json,
            json_deserializer=orjson.loads,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets readers run beside the writer; NORMAL syncs at checkpoints, so a commit
            # survives a killed process (not a power cut) without an fsync per decision.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            # Checkpoints (the fsync of WAL mode) run in the store's maintenance thread,
            # never inside a commit that a /route is waiting on.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.close()

        return engine
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        json_serializer=_dump_json,
        json_deserializer=orjson.loads,
    )


def _now() -> datetime:
    return datetime.now(UTC)


_DECISION_COLUMNS = tuple(column.name for column in tables.decisions.c)
_DECISION_ROW_ORDER = (
    "id", "created_at", "policy", "policy_version", "experiment", "variant", "unit_id",
    "features", "eligible", "prior_costs", "model", "probability", "cost_weight", "scores",
    "excluded", "words", "arm_tags", "prior_qualities", "shadow_of", "attempt", "previous_id",
    "chain_id", "tenant",
)  # fmt: skip


_FEEDBACK_ROW_ORDER = (
    "id", "decision_id", "source", "created_at", "quality", "cost_usd", "cost_source",
    "input_tokens", "output_tokens", "latency_ms", "error", "reward",
)  # fmt: skip


def _model_values(model: ModelSpec) -> dict[str, Any]:
    return {
        "provider": model.provider,
        "input_price_per_mtok": model.input_price_per_mtok,
        "output_price_per_mtok": model.output_price_per_mtok,
        "context_window": model.context_window,
        "tags": sorted(model.tags),
        "enabled": model.enabled,
        "updated_at": _now(),
        "requests_per_minute": model.requests_per_minute,
        "tokens_per_minute": model.tokens_per_minute,
        "prior_quality": model.prior_quality,
    }


def _utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; every stored one is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _decision_from(row: Sequence[Any]) -> DecisionRecord:
    """A row of ``select(decisions)``, read by position (in _DECISION_ROW_ORDER, which the
    store checks on start): a lookup by name costs more than the rest of the decoding."""
    (
        decision_id, created_at, policy, policy_version, experiment, variant, unit_id, features,
        eligible, prior_costs, model, probability, cost_weight, scores, excluded, words,
        arm_tags, prior_qualities, shadow_of, attempt, previous_id, chain_id, tenant,
    ) = row  # fmt: skip
    return DecisionRecord(
        id=decision_id,
        created_at=_utc(created_at),
        policy=policy,
        policy_version=policy_version,
        experiment=experiment,
        variant=variant,
        unit_id=unit_id,
        features=features,
        eligible=tuple(eligible),
        prior_costs=prior_costs,
        model=model,
        probability=probability,
        cost_weight=cost_weight,
        scores=scores,
        excluded=excluded,
        words=tuple(words or ()),
        arm_tags={name: tuple(tags) for name, tags in (arm_tags or {}).items()},
        prior_qualities=prior_qualities or {},
        shadow_of=shadow_of,
        attempt=attempt,
        previous_id=previous_id,
        chain_id=chain_id,
        tenant=tenant,
    )


def _feedback_from(row: Sequence[Any]) -> FeedbackRecord:
    """A row of ``select(feedback)``, by position (in _FEEDBACK_ROW_ORDER)."""
    (
        _id, decision_id, source, created_at, quality, cost_usd, cost_source, input_tokens,
        output_tokens, latency_ms, error, reward,
    ) = row  # fmt: skip
    return FeedbackRecord(
        decision_id=decision_id,
        source=source,
        created_at=_utc(created_at),
        quality=quality,
        cost_usd=cost_usd,
        cost_source=cost_source,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_ms=latency_ms,
        error=error,
        reward=reward,
    )


# The statements of every escalation and every feedback are built once: building a statement
# costs about as much as running it on SQLite. "ids" is expanded to the list it is given.
_DECISIONS_BY_ID = select(tables.decisions).where(
    tables.decisions.c.id.in_(bindparam("ids", expanding=True))
)
_GRADES_OF = (
    select(tables.feedback)
    .where(
        tables.feedback.c.decision_id.in_(bindparam("ids", expanding=True)),
        tables.feedback.c.quality.is_not(None),
    )
    .order_by(tables.feedback.c.id)
)


def _feedback_since_query() -> Select[Any]:
    """Feedback after a cursor, each row with its decision (what learning needs of it: its
    scores and exclusions, the largest part of a row, stay in the database) and whether it
    is its decision's first graded feedback."""
    f, d = tables.feedback, tables.decisions
    earlier = tables.feedback.alias("earlier")
    first = ~(
        select(earlier.c.id)
        .where(
            earlier.c.decision_id == f.c.decision_id,
            earlier.c.quality.is_not(None),
            earlier.c.id < f.c.id,
        )
        .exists()
    )
    return (
        select(
            *f.c,
            first,
            d.c.created_at,
            d.c.policy,
            d.c.policy_version,
            d.c.experiment,
            d.c.variant,
            d.c.unit_id,
            d.c.features,
            d.c.eligible,
            d.c.prior_costs,
            d.c.model,
            d.c.probability,
            d.c.cost_weight,
            d.c.words,
            d.c.arm_tags,
            d.c.prior_qualities,
            d.c.attempt,
            d.c.chain_id,
        )
        .join(d, d.c.id == f.c.decision_id)
        .where(f.c.id > bindparam("cursor"))
        .order_by(f.c.id)
        .limit(bindparam("limit"))
    )


_FEEDBACK_SINCE = _feedback_since_query()
_INSERT_FEEDBACK = insert(tables.feedback)
_FEEDBACK_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


class SqlStore:
    """Durable decision and feedback logs, policy snapshots and the model pool."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._postgres = self.engine.dialect.name == "postgresql"
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # SQLite has one writer at a time, and its busy handler makes a waiting writer sleep
        # (1, 2, 5, 10, ... ms) before it tries again: under feedback traffic the event loop's
        # decision log slept with it. This process's writers take turns on a lock instead,
        # which hands the database to the next one as soon as a commit ends. (Other processes
        # still meet the busy handler.) On PostgreSQL writers run side by side.
        self._write_lock: contextlib.AbstractContextManager[object] = (
            threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        )
        self._decision_lock = self._write_lock if self.is_sqlite else threading.Lock()
        # Reads run outside transactions on PostgreSQL. Wrapped in BEGIN and ROLLBACK (the
        # engine's default), every statement is planned anew, since psycopg forgets all the
        # statements it prepared whenever a ROLLBACK passes: the learner's read took 2.4 ms
        # instead of 0.3. At READ COMMITTED each statement sees its own snapshot either way.
        # (SQLite's driver opens no transaction for a read.)
        self._reads = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self._postgres
            else self.engine
        )
        self._maintenance: threading.Thread | None = None
        self._stop_maintenance = threading.Event()
        self._decision_connection: PoolProxiedConnection | None = None
        dialect = self.engine.dialect
        # Rows are written as tuples in this order (insert_decisions); a schema change that
        # moves a column must move it there too.
        if _DECISION_COLUMNS != _DECISION_ROW_ORDER:
            raise RuntimeError(f"decisions columns changed: {_DECISION_COLUMNS}")
        # feedback_since reads feedback rows by position, in this order.
        if tuple(column.name for column in tables.feedback.c) != _FEEDBACK_ROW_ORDER:
            raise RuntimeError("feedback columns changed; update _FEEDBACK_ROW_ORDER")
        # SQLite stores datetimes as SQLAlchemy formats them, so they read back the same.
        created_at = tables.decisions.c.created_at.type.dialect_impl(dialect)
        self._bind_created_at = created_at.bind_processor(dialect)
        markers = [
            ("%s::json" if isinstance(column.type, JSON) else "%s")
            if dialect.paramstyle != "qmark"
            else "?"
            for column in tables.decisions.c
        ]
        self._insert_decision_sql = (
            f"INSERT INTO decisions ({', '.join(_DECISION_COLUMNS)}) VALUES ({', '.join(markers)})"
        )
        o, d = tables.model_outcomes, tables.decisions
        dialect_insert = postgresql_insert if self._postgres else sqlite_insert
        count = dialect_insert(o).from_select(
            ["model", "outcomes"],
            select(d.c.model, literal(1)).where(d.c.id == bindparam("decision_id")),
        )
        self._count_outcome_statement = count.on_conflict_do_update(
            index_elements=[o.c.model], set_={"outcomes": o.c.outcomes + 1}
        )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction, begun once this process's turn to write has come (the lock
        is taken before a connection, so no connection is held while waiting for it)."""
        with self._write_lock, self.engine.begin() as connection:
            yield connection

    def start_maintenance(self, interval_s: float = 1.0) -> None:
        """SQLite: checkpoints the write-ahead log into the database every interval.

        PASSIVE never blocks a writer; once a checkpoint has caught up, SQLite starts the WAL
        file over, so it stays small however long the service runs.
        """
        if not self.is_sqlite or self._maintenance is not None:
            return
        self._stop_maintenance.clear()

        def run() -> None:
            while not self._stop_maintenance.wait(interval_s):
                self.checkpoint()

        self._maintenance = threading.Thread(target=run, name="sqlite-checkpoint", daemon=True)
        self._maintenance.start()

    def checkpoint(self) -> None:
        if not self.is_sqlite:
            return
        try:
            with self._reads.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception:
            log.exception("SQLite checkpoint failed")

    def close(self) -> None:
        if self._maintenance is not None:
            self._stop_maintenance.set()
            self._maintenance.join()
            self._maintenance = None
            self.checkpoint()
        with self._decision_lock:
            if self._decision_connection is not None:
                self._decision_connection.close()
                self._decision_connection = None
        self.engine.dispose()

    def _decision_row(self, r: DecisionRecord) -> tuple[Any, ...]:
        """A decision as the insert statement binds it, in column order."""
        when = self._bind_created_at
        return (
            r.id,
            r.created_at if when is None else when(r.created_at),
            r.policy,
            r.policy_version,
            r.experiment,
            r.variant,
            r.unit_id,
            _dump_json(r.features),
            _dump_json(r.eligible),
            _dump_json(r.prior_costs),
            r.model,
            r.probability,
            r.cost_weight,
            _dump_json(r.scores),
            _dump_json(r.excluded),
            _dump_json(r.words) if r.words else None,
            _dump_json(r.arm_tags) if r.arm_tags else None,
            _dump_json(r.prior_qualities) if r.prior_qualities else None,
            r.shadow_of,
            r.attempt,
            r.previous_id,
            r.chain_id,
            r.tenant,
        )

    def insert_escalation(self, record: DecisionRecord) -> str | None:
        """Its own transaction, outside the batched log: the unique previous_id refuses a
        second escalation of the same attempt, and that must fail this request alone."""
        try:
            with self._writing() as connection:
                connection.exec_driver_sql(self._insert_decision_sql, self._decision_row(record))
        except IntegrityError:
            d = tables.decisions
            with self._reads.connect() as connection:
                existing: str | None = connection.execute(
                    select(d.c.id).where(d.c.previous_id == record.previous_id)
                ).scalar()
            if existing is None:  # not the unique previous_id: a real fault
                raise
            return existing
        return None

    def graded_decisions(
        self, decision_ids: Sequence[str]
    ) -> dict[str, tuple[DecisionRecord, FeedbackRecord | None]]:
        ids = {"ids": list(decision_ids)}
        graded: dict[str, FeedbackRecord] = {}
        with self._reads.connect() as connection:
            decisions = [_decision_from(row) for row in connection.execute(_DECISIONS_BY_ID, ids)]
            for row in connection.execute(_GRADES_OF, ids):
                feedback = _feedback_from(row)
                graded.setdefault(feedback.decision_id, feedback)
        return {decision.id: (decision, graded.get(decision.id)) for decision in decisions}

    def escalated(self, decision_ids: Sequence[str]) -> set[str]:
        d = tables.decisions
        with self._reads.connect() as connection:
            return set(
                connection.execute(
                    select(d.c.previous_id).where(d.c.previous_id.in_(list(decision_ids)))
                ).scalars()
            )

    def chain_attempts(
        self, chain_id: str, before_attempt: int | None = None
    ) -> list[tuple[DecisionRecord, list[FeedbackRecord]]]:
        d, f = tables.decisions, tables.feedback
        # Shadows share the chain id but are never served: they are no attempt.
        members = and_(or_(d.c.id == chain_id, d.c.chain_id == chain_id), d.c.shadow_of.is_(None))
        if before_attempt is not None:
            members = and_(members, d.c.attempt < before_attempt)
        with self._reads.connect() as connection:
            decisions = [
                _decision_from(row)
                for row in connection.execute(select(d).where(members).order_by(d.c.attempt))
            ]
            feedback: dict[str, list[FeedbackRecord]] = {}
            for row in connection.execute(
                select(f).where(f.c.decision_id.in_([x.id for x in decisions])).order_by(f.c.id)
            ):
                record = _feedback_from(row)
                feedback.setdefault(record.decision_id, []).append(record)
        return [
            (replace(decision, scores={}, excluded={}), feedback.get(decision.id, []))
            for decision in decisions
        ]

    def insert_decisions(self, records: Sequence[DecisionRecord]) -> None:
        """One transaction for the batch, through the driver's own executemany.

        This is the hot path of every /route: the statement is built once per store, the row
        is a tuple in column order, and the driver binds the rows in C on a connection kept
        for the log (no pool checkout, no per-statement engine events).
        """
        if not records:
            return
        rows = [self._decision_row(r) for r in records]
        with self._decision_lock:
            if self._decision_connection is None:
                self._decision_connection = self.engine.raw_connection()
            connection = self._decision_connection
            try:
                cursor = connection.cursor()
                cursor.executemany(self._insert_decision_sql, rows)
                cursor.close()
                connection.commit()
            except Exception:
                # Whatever went wrong, the next batch starts on a fresh connection.
                self._decision_connection = None
                with contextlib.suppress(Exception):
                    connection.rollback()
                connection.invalidate()
                raise

    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        with self._reads.connect() as connection:
            row = connection.execute(_DECISIONS_BY_ID, {"ids": [decision_id]}).first()
        return None if row is None else _decision_from(row)

    def _existing(self, record: FeedbackRecord) -> FeedbackInsert | None:
        with self._reads.connect() as connection:
            row = connection.execute(
                select(tables.feedback.c.reward).where(
                    tables.feedback.c.decision_id == record.decision_id,
                    tables.feedback.c.source == record.source,
                )
            ).first()
        return None if row is None else FeedbackInsert(duplicate=True, reward=row.reward)

    def insert_feedback(self, record: FeedbackRecord) -> FeedbackInsert:
        """Inserts once per (decision, source); a repeat returns the first row's reward.

        On PostgreSQL a transaction-scoped advisory lock serialises the inserts, so feedback ids
        become visible in id order and a learner's cursor can never step over a row that commits
        late. SQLite has a single writer, which gives the same order by itself.
        """
        row = {
            "decision_id": record.decision_id,
            "source": record.source,
            "created_at": record.created_at,
            "quality": record.quality,
            "cost_usd": record.cost_usd,
            "cost_source": record.cost_source,
            "input_tokens": record.input_tokens,
            "output_tokens": record.output_tokens,
            "latency_ms": record.latency_ms,
            "error": record.error,
            "reward": record.reward,
        }
        try:
            with self._writing() as connection:
                if self._postgres:
                    connection.execute(_FEEDBACK_LOCK, {"key": _FEEDBACK_LOCK_KEY})
                connection.execute(_INSERT_FEEDBACK, row)
                if record.quality is not None:
                    self._count_outcome(connection, record.decision_id)
        except IntegrityError:
            existing = self._existing(record)
            if existing is None:  # not a repeat: an unknown decision, for one
                raise
            return existing
        return FeedbackInsert(duplicate=False, reward=record.reward)

    def _count_outcome(self, connection: Connection, decision_id: str) -> None:
        """One more scored outcome for the decision's model, in the feedback's transaction."""
        connection.execute(self._count_outcome_statement, {"decision_id": decision_id})

    def outcome_counts(self) -> dict[str, int]:
        o = tables.model_outcomes
        with self._reads.connect() as connection:
            return {
                model: count for model, count in connection.execute(select(o.c.model, o.c.outcomes))
            }

    def feedback_since(
        self, cursor: int, limit: int
    ) -> list[tuple[StoredFeedback, DecisionRecord]]:
        """The learner's read (_FEEDBACK_SINCE). Rows are built by position, not by name:
        this read is most of what a learner spends per feedback."""
        with self._reads.connect() as connection:
            rows = connection.execute(_FEEDBACK_SINCE, {"cursor": cursor, "limit": limit}).all()
        found = []
        for (
            feedback_id, decision_id, source, created_at, quality, cost_usd, cost_source,
            input_tokens, output_tokens, latency_ms, error, reward, is_first,
            decided_at, policy, policy_version, experiment, variant, unit_id, features,
            eligible, prior_costs, model, probability, cost_weight, words, arm_tags,
            prior_qualities, attempt, chain_id,
        ) in rows:  # fmt: skip
            feedback = FeedbackRecord(
                decision_id, source, _utc(created_at), quality, cost_usd, cost_source,
                input_tokens, output_tokens, latency_ms, error, reward,
            )  # fmt: skip
            # The learner does not read scores, exclusions, shadows, previous ids or tenants.
            decision = _decision_from(
                (
                    decision_id, decided_at, policy, policy_version, experiment, variant, unit_id,
                    features, eligible, prior_costs, model, probability, cost_weight, {}, {},
                    words, arm_tags, prior_qualities, None, attempt, None, chain_id, None,
                )
            )  # fmt: skip
            stored = StoredFeedback(feedback_id, feedback, bool(is_first) and quality is not None)
            found.append((stored, decision))
        return found

    def closed_decisions(
        self, after: str | None, created_before: datetime, limit: int
    ) -> list[tuple[DecisionRecord, list[FeedbackRecord]]]:
        d, f = tables.decisions, tables.feedback
        query = select(d).where(d.c.created_at < created_before)
        if after is not None:
            moment, _, decision_id = after.partition("|")
            at = datetime.fromisoformat(moment).replace(tzinfo=UTC)
            query = query.where(
                or_(d.c.created_at > at, and_(d.c.created_at == at, d.c.id > decision_id))
            )
        query = query.order_by(d.c.created_at, d.c.id).limit(limit)
        with self._reads.connect() as connection:
            decisions = [_decision_from(row) for row in connection.execute(query)]
            feedback: dict[str, list[FeedbackRecord]] = {r.id: [] for r in decisions}
            if decisions:
                rows = connection.execute(
                    select(f).where(f.c.decision_id.in_(list(feedback))).order_by(f.c.id)
                )
                for row in rows:
                    record = _feedback_from(row)
                    feedback[record.decision_id].append(record)
        return [(decision, feedback[decision.id]) for decision in decisions]

    def save_snapshot(self, snapshot: Snapshot, *, keep: int = 3) -> None:
        s = tables.policy_snapshots
        with self._writing() as connection:
            connection.execute(
                insert(s),
                {
                    "policy": snapshot.policy,
                    "spec": snapshot.spec,
                    "version": snapshot.version,
                    "window_cursor": snapshot.window_cursor,
                    "feedback_cursor": snapshot.feedback_cursor,
                    "state": snapshot.state,
                    "created_at": _now(),
                },
            )
            # Older snapshots are only a fallback; the log is the source of truth.
            ids_to_keep = (
                connection.execute(
                    select(s.c.id)
                    .where(s.c.policy == snapshot.policy)
                    .order_by(s.c.id.desc())
                    .limit(keep)
                )
                .scalars()
                .all()
            )
            connection.execute(
                delete(s).where(s.c.policy == snapshot.policy, s.c.id.not_in(ids_to_keep))
            )

    def latest_snapshot(self, policy: str, spec: str | None) -> Snapshot | None:
        """The newest snapshot of the policy in that configuration (any, when spec is None)."""
        s = tables.policy_snapshots
        query = select(s).where(s.c.policy == policy)
        if spec is not None:
            query = query.where(s.c.spec == spec)
        with self._reads.connect() as connection:
            row = connection.execute(query.order_by(s.c.id.desc()).limit(1)).mappings().first()
        if row is None:
            return None
        return Snapshot(
            policy=row["policy"],
            spec=row["spec"],
            version=row["version"],
            feedback_cursor=row["feedback_cursor"],
            state=bytes(row["state"]),
            window_cursor=row["window_cursor"],
            id=row["id"],
        )

    def latest_snapshot_id(self, policy: str, spec: str) -> int | None:
        """The newest snapshot's id alone: what a serving replica polls for."""
        s = tables.policy_snapshots
        with self._reads.connect() as connection:
            found: int | None = connection.execute(
                select(s.c.id)
                .where(s.c.policy == policy, s.c.spec == spec)
                .order_by(s.c.id.desc())
                .limit(1)
            ).scalar()
        return found

    def list_models(self) -> list[ModelSpec]:
        with self._reads.connect() as connection:
            rows = connection.execute(select(tables.models).order_by(tables.models.c.name))
            return [
                ModelSpec(
                    name=row.name,
                    provider=row.provider,
                    input_price_per_mtok=row.input_price_per_mtok,
                    output_price_per_mtok=row.output_price_per_mtok,
                    context_window=row.context_window,
                    tags=frozenset(row.tags),
                    enabled=row.enabled,
                    requests_per_minute=row.requests_per_minute,
                    tokens_per_minute=row.tokens_per_minute,
                    prior_quality=row.prior_quality,
                )
                for row in rows
            ]

    def rate_usage(self, models: Sequence[str], minute: int) -> dict[str, tuple[int, int]]:
        """Requests and tokens routed to each model in the minute, by every process."""
        w = tables.rate_windows
        with self._reads.connect() as connection:
            rows = connection.execute(
                select(w.c.model, w.c.requests, w.c.tokens).where(
                    w.c.minute == minute, w.c.model.in_(list(models))
                )
            ).all()
        return {model: (requests, tokens) for model, requests, tokens in rows}

    def take_rate(
        self,
        model: str,
        minute: int,
        tokens: int,
        *,
        max_requests: int | None,
        max_tokens: int | None,
    ) -> bool:
        """Counts one request of ``tokens`` against the model's minute if both limits still
        allow it, atomically for every process; False when they do not."""
        w = tables.rate_windows
        fits = []
        if max_requests is not None:
            fits.append(w.c.requests + 1 <= max_requests)
        if max_tokens is not None:
            fits.append(w.c.tokens + tokens <= max_tokens)
        dialect_insert = postgresql_insert if self._postgres else sqlite_insert
        with self._writing() as connection:
            # The window's row exists first, so the conditional update below is the one
            # atomic step: concurrent takers wait on its row lock and re-check the limits.
            connection.execute(
                dialect_insert(w)
                .values(model=model, minute=minute, requests=0, tokens=0)
                .on_conflict_do_nothing()
            )
            taken: int = connection.execute(
                update(w)
                .where(w.c.model == model, w.c.minute == minute, *fits)
                .values(requests=w.c.requests + 1, tokens=w.c.tokens + tokens)
            ).rowcount
        return taken == 1

    def spend(self, scope: str, period: int) -> float:
        b = tables.budget_spend
        with self._reads.connect() as connection:
            found: float | None = connection.execute(
                select(b.c.spend_usd).where(b.c.scope == scope, b.c.period == period)
            ).scalar()
        return found or 0.0

    def add_spend(self, scope: str, period: int, usd: float) -> None:
        b = tables.budget_spend
        dialect_insert = postgresql_insert if self._postgres else sqlite_insert
        statement = dialect_insert(b).values(scope=scope, period=period, spend_usd=usd)
        with self._writing() as connection:
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[b.c.scope, b.c.period],
                    set_={"spend_usd": b.c.spend_usd + statement.excluded.spend_usd},
                )
            )

    def save_experiment(self, document: Mapping[str, Any], *, create: bool) -> bool:
        """Creates (False if the name exists) or replaces (False if it does not) one."""
        e = tables.experiments
        values = {"document": document, "updated_at": _now()}
        try:
            with self._writing() as connection:
                if create:
                    connection.execute(insert(e).values(name=document["name"], **values))
                    return True
                changed: int = connection.execute(
                    update(e).where(e.c.name == document["name"]).values(values)
                ).rowcount
                return changed == 1
        except IntegrityError:
            return False

    def load_experiments(self) -> list[dict[str, Any]]:
        e = tables.experiments
        with self._reads.connect() as connection:
            return list(connection.execute(select(e.c.document).order_by(e.c.name)).scalars())

    def experiment_log(self, name: str) -> list[tuple[DecisionRecord, FeedbackRecord | None]]:
        """The experiment's decisions, each with its first scored feedback (or None)."""
        d, f = tables.decisions, tables.feedback
        with self._reads.connect() as connection:
            decisions = [
                _decision_from(row)
                for row in connection.execute(
                    select(d).where(d.c.experiment == name).order_by(d.c.created_at, d.c.id)
                )
            ]
            scored: dict[str, FeedbackRecord] = {}
            rows = connection.execute(
                select(f)
                .join(d, d.c.id == f.c.decision_id)
                .where(d.c.experiment == name, f.c.quality.is_not(None))
                .order_by(f.c.id)
            )
            for row in rows:
                record = _feedback_from(row)
                scored.setdefault(record.decision_id, record)
        return [(decision, scored.get(decision.id)) for decision in decisions]

    def save_rules(self, document: Mapping[str, Any]) -> None:
        r = tables.rules
        with self._writing() as connection:
            changed = connection.execute(
                update(r).where(r.c.id == 1).values(document=document, updated_at=_now())
            ).rowcount
            if not changed:
                connection.execute(insert(r).values(id=1, document=document, updated_at=_now()))

    def load_rules(self) -> dict[str, Any] | None:
        with self._reads.connect() as connection:
            found: dict[str, Any] | None = connection.execute(
                select(tables.rules.c.document).where(tables.rules.c.id == 1)
            ).scalar()
        return found

    def insert_model(self, model: ModelSpec) -> bool:
        """Adds a model; False when one of that name exists (in any process's view)."""
        try:
            with self._writing() as connection:
                connection.execute(
                    insert(tables.models).values(name=model.name, **_model_values(model))
                )
        except IntegrityError:
            return False
        return True

    def upsert_models(self, models: Sequence[ModelSpec]) -> None:
        """The configuration wins for the models it names; models it does not name remain."""
        m = tables.models
        with self._writing() as connection:
            existing = set(connection.execute(select(m.c.name)).scalars())
            for model in models:
                values = _model_values(model)
                if model.name in existing:
                    connection.execute(update(m).where(m.c.name == model.name).values(values))
                else:
                    connection.execute(insert(m).values(name=model.name, **values))
