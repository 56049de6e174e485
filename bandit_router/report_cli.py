"""`bandit-router report`: the savings report offline, from a database, as JSON or a page.

``cli.build_parser`` declares its arguments; the report's engine (SQL, the estimators, the
page's charts) is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bandit_router.settings import ConfigError, load_config


def report(args: argparse.Namespace) -> int:
    """`bandit-router report`: GET /report's JSON, or a self-contained HTML page of it, from a
    database (its pool as the service last stored it, else the configuration's)."""
    from datetime import UTC, datetime

    import orjson
    from sqlalchemy.exc import SQLAlchemyError

    from bandit_router.report import (
        ReportInputError,
        ReportSettings,
        build_report,
        default_baseline,
        report_query,
        window_of,
    )
    from bandit_router.report_html import report_page
    from bandit_router.storage.sql import SqlStore

    def fail(message: str) -> int:
        print(f"bandit-router report: {message}", file=sys.stderr)
        return 2

    url: str = args.database_url
    if url.startswith("sqlite") and "///" in url and not Path(url.split("///", 1)[1]).is_file():
        return fail(f"no database at {url}")
    if args.out is not None and args.out.suffix not in (".html", ".json"):
        return fail(f"--out {args.out}: the name must end in .html or .json")
    try:
        config = load_config(args.config)
    except ConfigError as error:
        return fail(str(error))
    store = SqlStore(url)
    try:
        pool = store.list_models() or list(config.models)
        by_name = {model.name: model for model in pool}
        window = window_of(args.since, args.until, args.bucket, datetime.now(UTC))
        if args.baseline is None:
            baseline = default_baseline(pool, config.expected_output_tokens)
        elif args.baseline in by_name:
            baseline = by_name[args.baseline]
        else:
            raise ReportInputError("baseline", f"{args.baseline!r} is not a model of the pool")
        query = report_query(
            window, tenant=args.tenant, task_type=args.task_type, experiment=args.experiment
        )
        found = build_report(
            store.report_log(query, baseline.name),
            window,
            ReportSettings(baseline, config.expected_output_tokens),
        )
    except ReportInputError as error:
        return fail(f"--{error.parameter}: {error.message}")
    except SQLAlchemyError as error:
        return fail(f"cannot read the decision log: {type(error).__name__}: {error}")
    finally:
        store.close()
    if args.out is None:
        sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.out.suffix == ".html":
        args.out.write_text(report_page(found))
    else:
        args.out.write_bytes(orjson.dumps(found, option=orjson.OPT_INDENT_2))
    if args.out is not None:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
