"""SQLAlchemy 2.0 tables; the migrations under bandit_router/migrations create them by hand."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Sequence,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY, PostgreSQL wants a 64-bit identity.
_SERIAL = BigInteger().with_variant(Integer(), "sqlite")

models = Table(
    "models",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("provider", String(100), nullable=False),
    Column("input_price_per_mtok", Float, nullable=False),
    Column("output_price_per_mtok", Float, nullable=False),
    Column("context_window", Integer, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("requests_per_minute", BigInteger, nullable=True),
    Column("tokens_per_minute", BigInteger, nullable=True),
    Column("prior_quality", Float, nullable=True),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("policy", String(200), nullable=False),
    Column("policy_version", BigInteger, nullable=False),
    # Indexed for experiments' decisions only (below): most decisions have none.
    Column("experiment", String(200), nullable=True),
    Column("variant", String(200), nullable=True),
    Column("unit_id", String(200), nullable=True),
    Column("features", JSON, nullable=False),
    Column("eligible", JSON, nullable=False),
    Column("prior_costs", JSON, nullable=False),
    Column("model", String(200), nullable=False),
    Column("probability", Float, nullable=False),
    Column("cost_weight", Float, nullable=False),
    Column("scores", JSON, nullable=False),
    Column("excluded", JSON, nullable=False),
    # Only for policies that read them (Policy.reads_words); null otherwise.
    Column("words", JSON, nullable=True),
    # The eligible models' tags, for those that have any; null when none has.
    Column("arm_tags", JSON, nullable=True),
    # The declared prior quality of each eligible model that has one; null when none has.
    Column("prior_qualities", JSON, nullable=True),
    # A shadow variant's choice: the id of the served decision it shadows (never served).
    Column("shadow_of", String(36), nullable=True),
    # Escalation (escalation.py): 1 for a first try; an escalation names the attempt it
    # continues (at most one escalation per attempt) and the chain's first decision. Their
    # indexes are partial, over escalations only: a first attempt's insert skips them.
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("previous_id", String(36), nullable=True),
    Column("chain_id", String(36), nullable=True),
    # The tenant of the API key the request came with, when tenants are configured.
    Column("tenant", String(200), nullable=True),
    # What the savings report reads of features and prior_costs, as plain columns
    # (rows.report_columns): the task type, the prompt's estimated tokens and the chosen
    # model's predicted cost; null where the JSON holds no such string or number.
    Column("task_type", Text, nullable=True),
    Column("tokens", Float, nullable=True),
    Column("predicted_cost_usd", Float, nullable=True),
)

Index(
    "ix_decisions_experiment",
    decisions.c.experiment,
    sqlite_where=decisions.c.experiment.is_not(None),
    postgresql_where=decisions.c.experiment.is_not(None),
)
Index(
    "uq_decisions_previous_id",
    decisions.c.previous_id,
    unique=True,
    sqlite_where=decisions.c.previous_id.is_not(None),
    postgresql_where=decisions.c.previous_id.is_not(None),
)
# The report's read of served decisions, in id order to merge with feedback's unique index
# (PostgreSQL only, migration decision_report_columns: SQLite's /route insert pays for no
# further index).
Index(
    "ix_decisions_report",
    decisions.c.id,
    postgresql_include=[
        "created_at", "model", "task_type", "tokens", "predicted_cost_usd", "probability",
        "tenant", "experiment",
    ],
    postgresql_where=decisions.c.shadow_of.is_(None),
)  # fmt: skip
Index(
    "ix_decisions_chain_id",
    decisions.c.chain_id,
    sqlite_where=decisions.c.chain_id.is_not(None),
    postgresql_where=decisions.c.chain_id.is_not(None),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("decision_id", String(36), ForeignKey("decisions.id"), nullable=False),
    Column("source", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("quality", Float, nullable=True),
    Column("cost_usd", Float, nullable=False),
    Column("cost_source", String(16), nullable=False),
    Column("input_tokens", BigInteger, nullable=True),
    Column("output_tokens", BigInteger, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("error", String(32), nullable=True),
    Column("reward", Float, nullable=True),
    # The learner's order of the feedback log, which its cursor walks: NULL until the learner
    # stamps the committed row (SqlFeedback.feedback_since; docs/development.md).
    Column("position", BigInteger, nullable=True),
    # On PostgreSQL it also carries what the savings report reads of each feedback, so the
    # report reads this index alone, in decision order (migration
    # decision_report_columns).
    UniqueConstraint(
        "decision_id",
        "source",
        postgresql_include=[
            "quality",
            "cost_usd",
            "cost_source",
            "input_tokens",
            "output_tokens",
            "latency_ms",
            "error",
        ],
    ),
)
# Finds the rows the learner has still to stamp (NULL) as well as the ones after a cursor.
Index("ix_feedback_position", feedback.c.position, unique=True)
# PostgreSQL's positions: never reused, so a cursor never meets a position twice.
FEEDBACK_POSITIONS = Sequence("feedback_position_seq", metadata=metadata)
# The log's order of a decision's feedback, as the learner met it: by position, then the rows
# the learner has not stamped yet, by id.
FEEDBACK_ORDER = (feedback.c.position.asc().nulls_last(), feedback.c.id)

policy_snapshots = Table(
    "policy_snapshots",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("policy", String(200), nullable=False),
    Column("spec", String(2000), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("feedback_cursor", BigInteger, nullable=False),
    Column("state", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # With a reward window: "created_at|decision id" of the last decision whose window closed.
    Column("window_cursor", String(100), nullable=True),
    Index("ix_policy_snapshots_policy_id", "policy", "id"),
)

# One row (id 1): the eligibility rules document every process applies.
rules = Table(
    "rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("document", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Requests and tokens routed to each model per minute since the epoch, for the rate limits.
rate_windows = Table(
    "rate_windows",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("minute", BigInteger, primary_key=True, autoincrement=False),
    Column("requests", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=False),
)

# What each budget scope has spent in each period, as routed decisions were priced.
budget_spend = Table(
    "budget_spend",
    metadata,
    Column("scope", String(200), primary_key=True),
    Column("period", BigInteger, primary_key=True, autoincrement=False),
    Column("spend_usd", Float, nullable=False),
)

# Scored feedback reports per model: a model with few is new, and gets an exploration quota.
model_outcomes = Table(
    "model_outcomes",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("outcomes", BigInteger, nullable=False),
)

# Named traffic splits between policies (experiments.Experiment.to_document()).
experiments = Table(
    "experiments",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("document", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Every change an admin key made (storage/audit.py): who (the key's name, never the key),
# what (method, path and the request's JSON body) and when. Read newest first (GET /audit).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("key_name", String(200), nullable=True),
    Column("method", String(10), nullable=False),
    Column("path", String(2000), nullable=False),
    Column("change", JSON, nullable=True),
)

# The grader's queue (gateway/grader.py): one job per sampled decision, the prompt and answer
# to grade. A worker claims a job until ``claimed_until`` (a lease that a killed worker's
# jobs outlive, then are retaken); a graded or dropped job is deleted.
grading_jobs = Table(
    "grading_jobs",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("decision_id", String(36), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("prompt", JSON, nullable=False),
    Column("answer", Text, nullable=False),
    Column("tries", Integer, nullable=False, default=0),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    Column("claim", String(36), nullable=True),
    UniqueConstraint("decision_id"),
    Index("ix_grading_jobs_claimed_until", "claimed_until"),
)
