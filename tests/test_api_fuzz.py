"""Property test of the real server against its own OpenAPI schema: no input makes a 500.

Schemathesis turns every operation of the served schema into Hypothesis strategies of valid
and of invalid requests (derandomized, so a run is reproducible); the server runs as
`bandit-router serve` on loopback with a SQLite database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from tests.support import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("fuzz")
    process = ServerProcess(f"sqlite:///{folder / 'router.db'}", None, folder / "server.log")
    yield process
    process.stop()


def _operations(server: ServerProcess) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the served schema is invalid: {result}"
        operations.append(result.ok())
    return operations


def _acceptable(status: int, body: str) -> bool:
    # 503 is the contract's answer when no model is eligible, with the reasons; any other
    # 5xx is a bug.
    return status < 500 or (status == 503 and '"excluded"' in body)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_makes_a_server_error(server: ServerProcess, mode: GenerationMode) -> None:
    operations = _operations(server)
    assert {op.path for op in operations} >= {"/route", "/feedback", "/models", "/healthz"}
    if mode is GenerationMode.NEGATIVE:
        # Only operations that take input can be given invalid input.
        operations = [op for op in operations if op.method.upper() == "POST"]
    for operation in operations:

        @settings(
            max_examples=60,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            response = case.call(base_url=server.base_url)
            assert _acceptable(response.status_code, response.text), (
                f"{case.method} {case.path} {case.body!r} -> {response.status_code}: "
                f"{response.text[:300]}"
            )

        check()
