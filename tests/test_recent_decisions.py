"""The decisions a process remembers for the feedback that follows them (recent_decisions.py),
and the feedback that must not trust them blindly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from bandit_router.main import create_app
from bandit_router.recent_decisions import RecentDecisions
from bandit_router.settings import Settings, config_from_mapping
from tests.test_storage import decision

POOL = [
    {"name": "local-small", "provider": "local", "input_price_per_mtok": 0.0,
     "output_price_per_mtok": 0.0, "context_window": 4000, "tags": ["local"]},
    {"name": "cloud-mini", "provider": "openai", "input_price_per_mtok": 0.15,
     "output_price_per_mtok": 0.6, "context_window": 128000},
]  # fmt: skip


def test_the_oldest_decision_is_forgotten_first() -> None:
    recent = RecentDecisions(capacity=3)
    records = [decision(created_at=datetime(2026, 1, 1, minute=m, tzinfo=UTC)) for m in range(4)]
    for record in records:
        recent.remember(record)
    assert recent.get(records[0].id) is None
    assert [recent.get(r.id) for r in records[1:]] == records[1:]
    assert recent.get(str(uuid.uuid4())) is None


def test_feedback_on_a_remembered_decision_whose_row_is_gone_is_a_404(migrated_url: str) -> None:
    """Retention may remove a decision this process still remembers: its feedback is refused
    as for an unknown decision (never a 500), and other feedback in the same moments is
    stored."""
    config = config_from_mapping({"router": {}, "models": POOL})
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as client:
        gone, kept = (
            client.post("/route", json={"prompt": f"Say {word}."}).json()["decision_id"]
            for word in ("hello", "goodbye")
        )
        engine = create_engine(migrated_url)
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM decisions WHERE id = :id"), {"id": gone})
        engine.dispose()
        refused = client.post("/feedback", json={"decision_id": gone, "quality": 1.0})
        assert refused.status_code == 404, refused.text
        assert refused.json()["detail"] == f"unknown decision {gone}"
        stored = client.post("/feedback", json={"decision_id": kept, "quality": 1.0})
        assert stored.status_code == 202, stored.text
        assert stored.json()["duplicate"] is False
