"""PNG plots of a replay: the cost–quality frontier, learning curves, a drift scenario.

matplotlib is an optional extra (`pip install 'bandit_router[plots]'`), imported only here and
only when plots are drawn, with the headless Agg backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bandit_router.simulator.metrics import frontier


class PlotsUnavailable(RuntimeError):
    pass


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise PlotsUnavailable(
            "plots need matplotlib: pip install 'bandit_router[plots]'"
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_frontier(report: Mapping[str, Any], path: Path) -> None:
    """Every policy's points and hull, cascades and single-shot routers together, each single
    model and the oracle marked."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 5.5))
    for name, entry in report["policies"].items():
        points = [(p["cost_usd"], p["quality"]) for p in entry["points"]]
        hull = frontier(points)
        # Cascades (report["cascade"]) are dash-dotted or dotted with triangles, single-shot
        # routers solid or dashed with dots: learned or full information either way.
        cascade = bool(entry.get("cascade"))
        if entry["feedback"] == "bandit":
            style = "-." if cascade else "-"
        else:
            style = ":" if cascade else "--"
        line = axes.plot([c for c, _ in hull], [q for _, q in hull], style, label=name)[0]
        axes.scatter(
            [c for c, _ in points],
            [q for _, q in points],
            s=18 if cascade else 12,
            marker="^" if cascade else "o",
            color=line.get_color(),
        )
    for model, single in report["reference"]["single_models"].items():
        axes.scatter(single["cost_usd"], single["quality"], marker="x", color="black", s=25)
        axes.annotate(model, (single["cost_usd"], single["quality"]), fontsize=6)
    oracle = report["reference"]["oracle"]
    axes.scatter(oracle["cost_usd"], oracle["quality"], marker="*", s=120, color="gold",
                 edgecolor="black", label="oracle (λ = 0)", zorder=5)  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("cost per prompt (USD, log scale)")
    axes.set_ylabel("quality")
    axes.set_title("Cost–quality frontier")
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_learning(curves: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    """Online mean reward and cumulative regret against rounds, one line per bandit policy."""
    plt = _pyplot()
    figure, (reward_axes, regret_axes) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, curve in curves.items():
        rounds = range(1, len(curve["reward"]) + 1)
        label = f"{name} (λ = {curve['cost_weight']:g})"
        reward_axes.plot(rounds, curve["reward"], label=label)
        regret_axes.plot(rounds, curve["regret"], label=label)
    reward_axes.set_xlabel("round")
    reward_axes.set_ylabel("mean reward so far")
    regret_axes.set_xlabel("round")
    regret_axes.set_ylabel("cumulative regret against the oracle")
    reward_axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_scenario(
    curves: Mapping[str, Any], boundaries: list[int], window: int, path: Path
) -> None:
    """Each policy's trailing mean reward over a drift scenario's stream, the best fixed
    choice per task of each segment dashed, and the events as vertical lines."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(10, 4.5))
    for name, curve in curves.items():
        # Thinned to at most about 2,000 points: a line needs no more.
        stride = max(1, len(curve) // 2000)
        rounds = range(window, window + len(curve), stride)
        style = {"linestyle": "--", "color": "black"} if name == "best fixed per task" else {}
        axes.plot(rounds, curve[::stride], label=name, linewidth=1.0, **style)
    for number, boundary in enumerate(boundaries):
        axes.axvline(boundary, color="red", linestyle=":", label="event" if number == 0 else None)
    axes.set_xlabel("decision")
    axes.set_ylabel(f"mean reward over the last {window} decisions")
    axes.set_title("Drift scenario: moving reward")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
