"""The report as HTML with inline SVG charts, drawn here in Python: no script, no library, no
network. `bandit-router report --out report.html` writes it as a page; the dashboard inserts
the same sections, and the state of the service beside them, into its shell.

Every string of the report (model, task and tenant names) is escaped; every chart's data
point is an SVG element of class ``point`` or ``bar``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from bandit_router.budget import PaceState
from bandit_router.health import Health

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
WIDTH, HEIGHT, PAD = 640, 220, 44

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:16px 24px;color:#111;background:#fafafa}
h1{font-size:20px}h2{font-size:16px;margin:24px 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:22px}.card small{color:#555}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:right}td:first-child,th:first-child{text-align:left}
svg{background:#fff;border:1px solid #ddd;border-radius:6px}.legend span{margin-right:12px}
.none{color:#777;font-style:italic}
"""


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:,.4f}"


def _number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ci(figure: Mapping[str, Any] | None) -> str:
    if not figure or figure.get("value") is None:
        reason = (figure or {}).get("reason", "not estimated")
        return f'<span class="none">{escape(str(reason))}</span>'
    ci = figure.get("ci")
    interval = "" if not ci else f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{figure['value']:.3f}{interval}"


def _color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _legend(names: Sequence[str]) -> str:
    items = "".join(
        f'<span style="color:{_color(i)}">■ {escape(name)}</span>' for i, name in enumerate(names)
    )
    return f'<div class="legend">{items}</div>'


def line_chart(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[float | None]]
) -> str:
    """One line per series over the labels (points where the value is known)."""
    values = [v for line in series.values() for v in line if v is not None]
    if not values or not labels:
        return f'<p class="none">{escape(title)}: no data in the window</p>'
    low, high = min(0.0, *values), max(values)
    high = high if high > low else low + 1.0
    step = (WIDTH - 2 * PAD) / max(len(labels) - 1, 1)

    def x(i: int) -> float:
        return PAD + i * step

    def y(v: float) -> float:
        return HEIGHT - PAD + (PAD * 2 - HEIGHT) * (v - low) / (high - low)

    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
        f'<text x="{PAD}" y="16" font-size="12">{escape(title)}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#999"/>',
        f'<text x="4" y="{y(high) + 4:.1f}" font-size="10">{high:.3g}</text>',
        f'<text x="4" y="{y(low) + 4:.1f}" font-size="10">{low:.3g}</text>',
        f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="10">{escape(labels[0])}</text>',
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" font-size="10" text-anchor="end">'
        f"{escape(labels[-1])}</text>",
    ]
    for index, (name, line) in enumerate(series.items()):
        known = [(x(i), y(v)) for i, v in enumerate(line) if v is not None]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in known)
        parts.append(
            f'<polyline fill="none" stroke="{_color(index)}" stroke-width="2" points="{path}"/>'
        )
        parts += [
            f'<circle class="point" data-series="{escape(name)}" cx="{px:.1f}" cy="{py:.1f}" '
            f'r="2.5" fill="{_color(index)}"/>'
            for px, py in known
        ]
    parts.append("</svg>")
    return "".join(parts) + _legend(list(series))


def stacked_bars(title: str, labels: Sequence[str], counts: Sequence[Mapping[str, int]]) -> str:
    """Per label, each model's share of the decisions as a stacked bar."""
    names = sorted({name for bucket in counts for name in bucket})
    if not names:
        return f'<p class="none">{escape(title)}: no decisions in the window</p>'
    width = (WIDTH - 2 * PAD) / max(len(labels), 1)
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
        f'<text x="{PAD}" y="16" font-size="12">{escape(title)}</text>',
    ]
    span = HEIGHT - 2 * PAD
    for i, bucket in enumerate(counts):
        total = sum(bucket.values())
        top = float(HEIGHT - PAD)
        for j, name in enumerate(names):
            if not total or not bucket.get(name):
                continue
            height = span * bucket[name] / total
            top -= height
            parts.append(
                f'<rect class="bar" data-series="{escape(name)}" x="{PAD + i * width:.1f}" '
                f'y="{top:.1f}" width="{max(width - 1, 1):.1f}" height="{height:.1f}" '
                f'fill="{_color(j)}"><title>{escape(name)}: {bucket[name]}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts) + _legend(names)


def interval_bars(title: str, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """One horizontal bar per row for a quality in [0, 1], with its interval as a whisker."""
    known = [(label, figure) for label, figure in rows if figure.get("value") is not None]
    if not known:
        return f'<p class="none">{escape(title)}: no graded decision</p>'
    row_height, left = 22, 160
    height = PAD + row_height * len(known)
    scale = WIDTH - left - PAD

    def x(v: float) -> float:
        return left + scale * min(max(v, 0.0), 1.0)

    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}">',
        f'<text x="8" y="16" font-size="12">{escape(title)}</text>',
    ]
    for i, (label, figure) in enumerate(known):
        top = 28 + i * row_height
        parts.append(f'<text x="8" y="{top + 12}" font-size="11">{escape(label)}</text>')
        parts.append(
            f'<rect class="bar" x="{left}" y="{top}" width="{x(figure["value"]) - left:.1f}" '
            f'height="14" fill="{_color(i)}"><title>{figure["value"]:.3f}</title></rect>'
        )
        if figure.get("ci"):
            low, high = figure["ci"]
            parts.append(
                f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{top + 7}" y2="{top + 7}" '
                'stroke="#111" stroke-width="2"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _headline(report: Mapping[str, Any]) -> str:
    baseline = report["baseline"]
    share = report["savings_share"]
    cards = [
        ("Saved", f'<b id="savings" data-value="{report["savings_usd"]!r}">'
         f"{_usd(report['savings_usd'])}</b>",
         "" if share is None else f"{share:.1%} of the baseline's spend"),
        ("Spent", f'<b id="spend">{_usd(report["spend_usd"])}</b>',
         f"{report['decisions']} decisions, {report['graded']} graded"),
        (f"Always {escape(baseline['model'])}",
         f'<b id="baseline-spend">{_usd(baseline["spend_usd"])}</b>', "priced on the same tokens"),
        ("Quality served", f"<b>{_ci(report['quality'])}</b>", "mean, 95% interval"),
        (f"Quality of {escape(baseline['model'])}", f"<b>{_ci(baseline['quality'])}</b>",
         f"SNIPS, ESS {baseline['ess']:.0f}"),
        ("Quality delta", f"<b>{_ci(report['quality_delta'])}</b>", "served − baseline"),
    ]  # fmt: skip
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><small>{title}</small>{value}<small>{note}</small></div>'
            for title, value, note in cards
        )
        + "</div>"
    )


def report_sections(report: Mapping[str, Any]) -> str:
    """The report's sections: headline, savings and quality over time, traffic share, per
    model, per task type and the task–model profile."""
    timeline = report["timeline"]
    labels = [bucket["start"][:16].replace("T", " ") for bucket in timeline]
    spent, baseline = [], []
    running_spend = running_baseline = 0.0
    for bucket in timeline:
        running_spend += bucket["spend_usd"]
        running_baseline += bucket["baseline_spend_usd"]
        spent.append(running_spend)
        baseline.append(running_baseline)
    window = report["window"]
    parts = [
        f'<section id="report"><p>From {escape(window["since"])} to {escape(window["until"])}'
        f"; baseline: always {escape(report['baseline']['model'])}.</p>",
        _headline(report),
        "<h2>Savings over time</h2>",
        line_chart(
            "cumulative spend (USD)", labels, {"served": spent, "always the baseline": baseline}
        ),
        line_chart("mean graded quality", labels, {"quality": [b["quality"] for b in timeline]}),
        "<h2>Traffic share per model</h2>",
        stacked_bars("decisions per model", labels, [b["decisions"] for b in timeline]),
        "<h2>Per model</h2>",
        interval_bars(
            "quality per model", [(m, v["quality"]) for m, v in report["models"].items()]
        ),
        _table(
            ["model", "decisions", "share", "spend", "quality", "errors", "p50 ms", "p95 ms"],
            [
                [
                    escape(name),
                    str(m["decisions"]),
                    f"{m['share']:.1%}",
                    _usd(m["spend_usd"]),
                    _ci(m["quality"]),
                    str(m["errors"]),
                    _number(m["latency_ms"]["p50"], 0),
                    _number(m["latency_ms"]["p95"], 0),
                ]
                for name, m in report["models"].items()
            ],
        ),
        "<h2>Per task type</h2>",
        _table(
            [
                "task type",
                "decisions",
                "spend",
                "baseline spend",
                "saved",
                "quality",
                "baseline quality",
                "delta",
            ],
            [
                [
                    escape(task),
                    str(t["decisions"]),
                    _usd(t["spend_usd"]),
                    _usd(t["baseline"]["spend_usd"]),
                    _usd(t["savings_usd"]),
                    _ci(t["quality"]),
                    _ci(t["baseline"]["quality"]),
                    _ci(t["quality_delta"]),
                ]
                for task, t in report["by_task"].items()
            ],
        ),
        "<h2>Task–model profile</h2>",
        _table(
            ["task type", "model", "decisions", "quality", "p50 ms", "p95 ms", "mean cost"],
            [
                [
                    escape(p["task_type"]),
                    escape(p["model"]),
                    str(p["decisions"]),
                    _ci(p["quality"]),
                    _number(p["latency_ms"]["p50"], 0),
                    _number(p["latency_ms"]["p95"], 0),
                    _usd(p["mean_cost_usd"]),
                ]
                for p in report["profiles"]
            ],
        ),
        "</section>",
    ]
    return "".join(parts)


def operations_html(
    *,
    health: Mapping[str, Health],
    budgets: Sequence[PaceState],
    experiments: Mapping[str, Mapping[str, Any]],
    learned: Mapping[str, int],
) -> str:
    """The service's state beside the report: breakers, budgets, experiments, learning."""
    parts = ['<section id="operations"><h2>Model health and breakers</h2>']
    parts.append(
        _table(
            ["model", "breaker", "reason", "until"],
            [
                [
                    escape(name),
                    escape(h.state),
                    escape(h.reason),
                    "" if h.until is None else escape(h.until.isoformat()),
                ]
                for name, h in health.items()
            ],
        )
    )
    parts.append("<h2>Budgets and pacing</h2>")
    parts.append(
        _table(
            ["scope", "budget", "spent", "pace", "added cost weight", "capped"],
            [
                [
                    escape(b.budget.scope),
                    _usd(b.budget.usd),
                    _usd(b.spend_usd),
                    _usd(b.pace_usd),
                    f"{b.added_cost_weight:.3g}",
                    "yes" if b.capped else "no",
                ]
                for b in budgets
            ],
        )
        if budgets
        else '<p class="none">no budget configured</p>'
    )
    parts.append("<h2>Experiments</h2>")
    rows = []
    for name, found in experiments.items():
        for variant, v in found["variants"].items():
            reward = v.get("reward")
            figure = None if reward is None else {"value": reward["mean"], "ci": reward["ci"]}
            rows.append(
                [
                    escape(name),
                    escape(variant),
                    escape(v["policy"]),
                    str(v["decisions"]),
                    _ci(figure),
                ]
            )
    parts.append(
        _table(["experiment", "variant", "policy", "decisions", "mean reward"], rows)
        if rows
        else '<p class="none">no experiment running</p>'
    )
    parts.append("<h2>What the policies have learned</h2>")
    parts.append(
        _table(
            ["policy", "outcomes learned"],
            [[escape(policy), str(count)] for policy, count in sorted(learned.items())],
        )
    )
    parts.append("</section>")
    return "".join(parts)


def report_page(report: Mapping[str, Any]) -> str:
    """A self-contained page: its style inline, its charts inline SVG, nothing fetched."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>bandit_router savings report</title>"
        f"<style>{STYLE}</style></head><body><h1>Savings report</h1>"
        f"{report_sections(report)}</body></html>"
    )
