"""The arrows of ARCHITECTURE.md, enforced by reading every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bandit_router"

SQL_ROLES = (
    "sql_decisions",
    "sql_feedback",
    "sql_history",
    "sql_snapshots",
    "sql_catalog",
    "sql_counters",
    "sql_audit",
    "sql_grading",
    "sql_report",
    "sql_retention",
)

# What each module (or package) may import from the project; a module follows the most specific
# entry that names it or a package it is in. The standard library and third-party packages are
# not limited here, except for core (stdlib only) and the lazy engines below.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "features": {"core", "text_rules"},
    # The rule tables and lexicons, over the matching code that gates their patterns.
    "text_rules": {"text_patterns"},
    "text_patterns": set(),
    "policies": {"core", "features", "policies"},
    "eligibility": {"core"},
    "health": set(),
    "metrics": set(),
    # The client speaks HTTP only: a caller needs it, its values and httpx, none of the server.
    "client": {"client_models"},
    "client_models": set(),
    # The Prometheus text: what the router counted and what it can tell when scraped.
    "exposition": {"router", "metrics", "health", "budget"},
    "budget": set(),
    "experiments": {"core"},
    "escalation": {"core"},
    "reward": {"core"},
    "schemas": {"core"},
    # The config file's models and rules are the API's (schemas), so both accept the same;
    # a model entry's upstream is the gateway's part of the file.
    "settings": {
        "core",
        "config_file",
        "escalation",
        "keys",
        "gateway.config",
        "gateway.grading",
        "gateway.options",
    },
    # The TOML file's schema: its sections, with the API's models and rules (schemas).
    "config_file": {"escalation", "gateway.config", "keys", "schemas"},
    # A pinned decision's log row (the gateway's calls of a model named by the caller).
    "pinning": {"core", "eligibility", "storage.base"},
    "recent_decisions": {"storage.base"},
    # The OpenAI-compatible gateway: a client of the router's use case, as api is (no SQL,
    # no policy); its options module is plain values. Its grader's queue is a store role.
    "gateway": {
        "api_auth",
        "core",
        "eligibility",
        "features",
        "gateway",
        "router",
        "schemas",
        "storage.base",
    },
    # API keys, their roles and digests: values and a lookup, nothing of HTTP.
    "keys": set(),
    # Who may call what over HTTP: the bearer check and each endpoint's declared role.
    "api_auth": {"core", "keys"},
    "storage": {"core", "storage"},
    # The role protocols and their records: what every consumer of storage imports.
    "storage.base": {"core", "storage.operations"},
    # The operations' roles (report, audit, grading, lease, retention): values and protocols.
    "storage.operations": set(),
    "storage.tables": set(),
    "storage.engine": set(),
    "storage.rows": {"storage.base", "storage.tables", "storage.engine"},
    "storage.log_writer": {"core", "storage.base"},
    # One module per role, each on the shared engine and rows, none on another role.
    **{
        f"storage.{role}": {
            "core",
            "storage.base",
            "storage.tables",
            "storage.engine",
            "storage.rows",
        }
        for role in SQL_ROLES
    },
    # The store that plays every role: the roles on one engine.
    "storage.sql": {"storage.engine", *(f"storage.{role}" for role in SQL_ROLES)},
    # The learner's lease: an advisory lock on a session of its own, apart from the store.
    "storage.sql_lease": set(),
    "migrations": {"storage", "settings", "migrations"},
    "learner": {"core", "escalation", "policies", "policy_host", "reward_window", "storage.base"},
    # How long the logs are kept, and the prune that holds to it.
    "retention": {"core", "settings", "storage.base"},
    # The learner command's loop: lead while holding the lease, stand by otherwise.
    "leadership": {"learner", "storage.base"},
    # The policies a serving process hosts, and the follower that loads a learner's snapshots.
    "policy_host": {"core", "policies", "reward_window", "storage.base"},
    # When a decision's outcome is learned, and what it is.
    "reward_window": {"core", "storage.base"},
    # An experiment's report: its log's means and differences, and each variant off-policy.
    "experiment_report": {"core", "escalation", "experiments", "ope", "storage.base"},
    # The pool, the rules and the experiments: what the admin endpoints change.
    "catalog": {"core", "eligibility", "experiments", "experiment_report", "storage.base"},
    # What the router takes and gives (re-exported by router).
    "router_values": {"core", "eligibility", "escalation", "experiments", "reward", "storage.base"},
    "router": {
        "catalog",
        "core",
        "experiments",
        "router_values",
        "features",
        "eligibility",
        "escalation",
        "health",
        "budget",
        "metrics",
        "reward",
        "pinning",
        "policies",
        "recent_decisions",
        "storage.base",
    },
    "api": {
        "admin_api",
        "report_api",
        "api_auth",
        "keys",
        "storage.base",
        "core",
        "exposition",
        "metrics",
        "router",
        "schemas",
        "eligibility",
        "features",
    },
    # The operators' endpoints, which api.create_app includes.
    "admin_api": {
        "api_auth",
        "budget",
        "core",
        "eligibility",
        "experiments",
        "health",
        "router",
        "schemas",
        "storage.base",
    },
    # The savings report: sums of the log (a store role), priced and estimated off-policy.
    "report": {"core", "ope", "storage.base"},
    # The report and the dashboard's state as HTML with inline SVG.
    "report_html": {"budget", "health"},
    # GET /report, /profiles and the dashboard, which api.create_app includes.
    "report_api": {
        "api_auth",
        "budget",
        "report",
        "report_html",
        "router",
        "schemas",
        "storage.base",
    },
    "main": {
        "api",
        "gateway",
        "keys",
        "experiments",
        "budget",
        "eligibility",
        "health",
        "learner",
        "leadership",
        "retention",
        "router",
        "settings",
        "storage",
        "migrations",
        "core",
    },
    "cli": {"settings", "main", "migrations", "simulator", "policies", "offline_cli", "report_cli"},
    # bandit-router report: the report offline, from a database.
    "report_cli": {"settings", "report", "report_html", "storage"},
    # replay, export-log and ope: the commands that read files or a database and serve nothing.
    "offline_cli": {
        "report",
        "report_html",
        "retention",
        "settings",
        "simulator",
        "policies",
        "core",
        "escalation",
        "ope",
        "storage",
    },
    # The simulator replays the service's own featurizer and policies, never its API or SQL.
    "simulator": {"core", "escalation", "features", "policies", "simulator", "ope"},
    "ope": {"core", "features", "policies"},
}
STDLIB_ONLY = {"core", "health", "budget", "metrics", "keys"}
LAZY_ENGINES = {"vowpalwabbit", "pylibvw", "matplotlib"}


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in relative.parts if p != "__init__"]
    return ".".join(parts) or "__init__"


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in the file."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from bandit_router.storage import tables" imports the module storage.tables.
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            modules = [name for name in names if _is_project_module(name)]
            found += [(name, id(node) in top_level) for name in modules]
            if len(modules) < len(names):
                found.append((node.module, id(node) in top_level))
    return found


def _is_project_module(name: str) -> bool:
    parts = name.split(".")
    if parts[0] != "bandit_router":
        return False
    path = PACKAGE.joinpath(*parts[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _project_targets(path: Path) -> set[str]:
    return {
        name.removeprefix("bandit_router.")
        for name, _ in _imports(path)
        if name.startswith("bandit_router.")
    }


def _allowed(target: str, allowed: set[str]) -> bool:
    return any(target == rule or target.startswith(rule + ".") for rule in allowed)


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rule(module: str) -> set[str]:
    """The most specific entry: the module's own, else its package's, up to the top."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        entry = ALLOWED.get(".".join(parts[:end]))
        if entry is not None:
            return entry
    raise KeyError(module)


def test_every_module_is_covered_by_a_rule() -> None:
    uncovered = [
        _module_name(p) for p in _sources()
        if _module_name(p) != "__init__" and _module_name(p).split(".")[0] not in ALLOWED
    ]  # fmt: skip
    assert uncovered == []


def test_every_storage_module_has_its_own_rule() -> None:
    """A new store role's module states what it stands on (and that no other role is it)."""
    unlisted = [
        _module_name(p) for p in (PACKAGE / "storage").glob("*.py")
        if _module_name(p) != "storage" and _module_name(p) not in ALLOWED
    ]  # fmt: skip
    assert unlisted == []


def test_imports_follow_the_arrows() -> None:
    violations = []
    for path in _sources():
        module = _module_name(path)
        top = module.split(".")[0]
        if top == "__init__":
            continue
        for target in _project_targets(path):
            if not _allowed(target, _rule(module)):
                violations.append(f"{module} imports {target}")
    assert violations == []


def test_nothing_imports_api_or_main_but_the_entry_points() -> None:
    importers = {
        _module_name(path) for path in _sources() if _project_targets(path) & {"api", "main"}
    }
    assert importers <= {"main", "cli"}


def test_router_knows_no_concrete_policy_and_no_sql() -> None:
    imported = {name for name, _ in _imports(PACKAGE / "router.py")}
    assert not any(name.startswith(("sqlalchemy", "bandit_router.policies.")) for name in imported)
    assert "bandit_router.storage.sql" not in imported


def test_core_imports_only_the_standard_library() -> None:
    import sys

    for module in STDLIB_ONLY:
        for name, _ in _imports(PACKAGE / f"{module}.py"):
            root = name.split(".")[0]
            assert root in sys.stdlib_module_names or root == "__future__", name


def test_optional_engines_are_imported_lazily() -> None:
    """vowpalwabbit and matplotlib load inside functions, never at module import."""
    for path in _sources():
        for name, top_level in _imports(path):
            if name.split(".")[0] in LAZY_ENGINES:
                assert not top_level, f"{_module_name(path)} imports {name} at import time"


def test_a_rule_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a core module importing the router is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from bandit_router.router import Router\nimport bandit_router.api\n")
    targets = _project_targets(bad)
    assert targets == {"router", "api"}
    assert not any(_allowed(t, ALLOWED["core"]) for t in targets)
