"""report.md: the replay report's tables, written from report.json's content."""

from __future__ import annotations

from typing import Any

from bandit_router.simulator.metrics import cost_to_reach, frontier, quality_at


def _hull_and_reach(
    entry: dict[str, Any], best: dict[str, Any]
) -> tuple[list[tuple[float, float]], str]:
    """A report entry's cost-quality hull, and the share of the best single model's cost it
    needs to reach that model's quality ("never" when it does not)."""
    hull = frontier([(p["cost_usd"], p["quality"]) for p in entry["points"]])
    reach = cost_to_reach(hull, best["quality"])
    return hull, "never" if reach is None else f"{reach / best['cost_usd']:.1%} of its cost"


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: the single models, each policy's summary and points, and the cascades."""
    best = report["reference"]["best_single"]
    budget = 0.25 * best["cost_usd"]
    lines = [
        "# Replay report",
        "",
        f"Train: `{report['train']}` ({report['n_train']} prompts); test: "
        f"`{report['test']}` ({report['n_test']} prompts)." if report["test"] else
        f"Train: `{report['train']}` ({report['n_train']} prompts), scored online.",
        "",
        "## Single models",
        "",
        "| model | quality | cost_usd |",
        "| --- | --- | --- |",
        *(
            f"| {m} | {v['quality']:.3f} | {v['cost_usd']:.6f} |"
            for m, v in sorted(
                report["reference"]["single_models"].items(), key=lambda kv: kv[1]["cost_usd"]
            )
        ),
        "",
        f"Best single model: {best['model']} ({best['quality']:.3f} at ${best['cost_usd']:.6f}).",
        "",
        "## Policies",
        "",
        "| policy | feedback | AIQ | quality at 25% of the best single's cost | "
        "cost to reach the best single's quality |",
        "| --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for name, entry in report["policies"].items():
        hull, reach_text = _hull_and_reach(entry, best)
        lines.append(
            f"| {name} | {entry['feedback']} | {entry['aiq']:.4f} | "
            f"{quality_at(hull, budget):.3f} | {reach_text} |"
        )
    lines += [
        "",
        "## Points",
        "",
        "| policy | λ | quality | cost_usd |",
        "| --- | --- | --- | --- |",
    ]
    for name, entry in report["policies"].items():
        for p in entry["points"]:
            lines.append(
                f"| {name} | {p['cost_weight']:g} | {p['quality']:.3f} | {p['cost_usd']:.6f} |"
            )
    if "cascade" in report:
        lines += _cascade_markdown(report)
    return "\n".join(lines) + "\n"


def _cascade_markdown(report: dict[str, Any]) -> list[str]:
    """Cascades beside single-shot routing, with the measures the cascade target is set in."""
    settings = report["cascade"]
    best = report["reference"]["best_single"]
    entries = report["policies"]
    lines = [
        "",
        "## Cascades",
        "",
        f"A simulated grader flips an answer's quality with probability "
        f"{settings['grader_error']:g}; on a grade below 0.5 the client escalates to a model "
        f"not yet tried, at most {settings['max_attempts']} attempts in all. Quality is the "
        "final answer's true quality, cost that of every attempt. `NAME+escalate` learns "
        "from the grades alone; the `*-cascade` references pick fixed chains of models "
        "knowing every training outcome, valued by their expectation over the grader's noise.",
        "",
        "| policy | feedback | cascade | AIQ | quality at 50% of the best single's cost | "
        "cost to reach the best single's quality |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in entries.items():
        hull, reach_text = _hull_and_reach(entry, best)
        lines.append(
            f"| {name} | {entry['feedback']} | {'yes' if entry.get('cascade') else 'no'} | "
            f"{entry['aiq']:.4f} | {quality_at(hull, 0.5 * best['cost_usd']):.3f} | "
            f"{reach_text} |"
        )
    if not any(e.get("cascade") and e["feedback"] == "full" for e in entries.values()):
        lines += ["", "The fixed-cascade references are left out: too many chains to try."]
    lines += [
        "",
        "| cascade | λ | quality | cost_usd | attempts per prompt |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, entry in entries.items():
        if entry.get("cascade") and entry["feedback"] == "bandit":
            lines += [
                f"| {name} | {p['cost_weight']:g} | {p['quality']:.3f} | {p['cost_usd']:.6f} | "
                f"{p['attempts']:.2f} |"
                for p in entry["points"]
            ]
    return lines
