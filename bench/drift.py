"""Forgetting after a change: recovery (docs/replay.md, "Drift scenarios") of a policy with
`half_life` (and, with `--detect`, change detection) against the same policy without, on the
three scenarios of data/routerbench/scenarios/, at λ = 20.

Targets: recovery within 1,000 decisions after every event, and at least 3× faster than
without forgetting (or where that one never recovers). `--stationary` also prints the AIQ of
the held-out replay (split 2026, the default λ grid) with and without forgetting: forgetting
should cost ≤ 0.005 AIQ where nothing changes. `--scenario FILE` replays other scenarios
instead, such as the controls of bench/drift_controls/ (an event that changes nothing; the
price cut with the catalog told).

    python -m bench.drift [--policy linucb] [--half-life H]... [--seeds N] [--stationary] [--detect]
        [--scenario FILE]...
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bandit_router.core import PolicySpec
from bandit_router.offline_cli import configured_priors
from bandit_router.settings import load_config
from bandit_router.simulator.outcomes import holdout_split, load_outcomes
from bandit_router.simulator.report import build_report
from bandit_router.simulator.scenario import load_scenario
from bandit_router.simulator.scenario_replay import build_scenario

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "data" / "routerbench" / "train.csv.gz"
SCENARIOS = tuple(
    ROOT / "data/routerbench/scenarios" / f"{name}.toml"
    for name in ("quality-drop", "price-cut", "new-model")
)
PACKAGED = ROOT / "data" / "routerbench" / "priors.toml"
"""The packaged configuration's learning settings and policy parameters, with the RouterBench
table's models and their priors as its pool (tests/test_change_detection.py holds it to
bandit_router/default_models.toml)."""


def packaged_policy(policy: str = "linucb") -> tuple[PolicySpec, dict[str, float]]:
    """``policy`` as the service builds it from the packaged configuration (load_config lays
    [learning] half_life and change_detection onto the policy's section: forgetting and change
    detection on; LinUCB's prior_weight 100), and the RouterBench priors its pool declares.

    Without the priors this is the variant replayed here as the default, `--half-life 1000
    --detect`: prior_weight only weighs a declared prior, so it changes nothing there."""
    config = load_config(PACKAGED)
    return PolicySpec.configured(policy, config.policy_params), configured_priors(config)


Variant = tuple[float | None, bool]
"""A half-life (None: no forgetting) and whether change detection is on."""


def _label(variant: Variant) -> str:
    life, detect = variant
    text = "no forgetting" if life is None else f"half_life {life:g}"
    return text + (" + detection" if detect else "")


def _params(policy: str, variant: Variant) -> dict[str, dict[str, object]]:
    life, detect = variant
    params: dict[str, object] = {} if life is None else {"half_life": life}
    if detect:
        params["detect_changes"] = True
    return {policy: params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="linucb")
    parser.add_argument("--half-life", type=float, action="append")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--stationary", action="store_true")
    parser.add_argument(
        "--detect", action="store_true", help="also each variant with change detection on"
    )
    parser.add_argument(
        "--scenario", type=Path, action="append", help="instead of the three of RouterBench"
    )
    args = parser.parse_args()
    table = load_outcomes(TABLE)
    lives: list[Variant] = [(None, False), *((h, False) for h in args.half_life or [2000.0])]
    if args.detect:
        lives += [(life, True) for life, _ in lives]
    for path in args.scenario or SCENARIOS:
        name = path.stem
        scenario = load_scenario(path, table)
        found = {}
        for life in lives:
            params = _params(args.policy, life)
            entry = build_scenario(
                table, scenario, policy_names=[args.policy], cost_weight=20.0,
                seeds=args.seeds, policy_params=params,
            ).entry["policies"][args.policy]  # fmt: skip
            found[life] = entry
            print(
                f"{name:13s} {_label(life):17s} reward {entry['reward']:.4f} "
                f"recovery {entry['recovery']} by seed {entry['recovery_by_seed']}"
            )
        base = found[(None, False)]["recovery"][0]
        for life in lives[1:]:
            mine = found[life]["recovery"][0]
            if mine is None:
                verdict = "never recovers"
            elif base is None:
                verdict = f"{mine} (without: never)"
            else:
                verdict = f"{mine}, {base / mine:.1f}× faster"
            print(f"{name:13s} {_label(life):17s} {verdict}")
    if args.stationary:
        train, test = holdout_split(table, 0.3, 2026)
        for life in lives:
            params = _params(args.policy, life)
            report = build_report(
                train, test, policy_names=[args.policy], seeds=args.seeds, policy_params=params
            ).report
            print(
                f"stationary    {_label(life):17s} AIQ {report['policies'][args.policy]['aiq']:.4f}"
            )


if __name__ == "__main__":
    main()
