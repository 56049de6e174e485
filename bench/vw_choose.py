"""Time of one VW choice, building its example included (target: ≤ 150 µs).

The policy is trained first on a few thousand decisions of the default pool (seven models),
then times ``choose`` on featurized prompts of mixed tasks, with and without the word namespace.
LinUCB's choice on the same contexts, timed in the same run, is the baseline.

    python -m bench.vw_choose [--decisions N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bandit_router.core import Context, Outcome, PolicySpec
from bandit_router.features import featurize, prompt_words
from bandit_router.policies import build
from bench.workload import PROMPTS, pool_arms


def _contexts(count: int, words: bool) -> list[Context]:
    contexts = []
    for i in range(count):
        text = PROMPTS[i % len(PROMPTS)]
        features = featurize(text)
        arms = pool_arms(features)
        contexts.append(
            Context(features, arms, 20.0, f"bench-{i}", prompt_words(text) if words else ())
        )
    return contexts


def _time_choose(spec: PolicySpec, contexts: list[Context], rounds: int = 5) -> float:
    """Median over rounds of the mean µs per choose, after training on the same contexts."""
    policy = build(spec)
    rng = random.Random(0)
    for context in contexts[:3000]:
        decision = policy.choose(context)
        policy.learn(
            context,
            decision.model,
            Outcome(float(rng.random() < 0.7), 0.001),
            probability=decision.probability,
        )
    per_round = []
    for _ in range(rounds):
        started = time.perf_counter()
        for context in contexts:
            policy.choose(context)
        per_round.append((time.perf_counter() - started) / len(contexts) * 1e6)
    return statistics.median(per_round)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=4000)
    args = parser.parse_args()
    plain = _contexts(args.decisions, words=False)
    worded = _contexts(args.decisions, words=True)
    linucb = _time_choose(PolicySpec("linucb"), plain)
    print(f"linucb choose (baseline):            {linucb:7.1f} µs per decision")
    worst = 0.0
    for label, spec, contexts in [
        ("vw squarecb", PolicySpec("vw"), plain),
        ("vw squarecb, 128 prompt words", PolicySpec("vw", {"words": 128}), worded),
        ("vw epsilon", PolicySpec("vw", {"exploration": "epsilon"}), plain),
        ("vw bag of 4", PolicySpec("vw", {"exploration": "bag"}), plain),
        ("vw cover of 4", PolicySpec("vw", {"exploration": "cover"}), plain),
    ]:
        micros = _time_choose(spec, contexts)
        worst = max(worst, micros)
        print(
            f"{label + ' choose:':37s}{micros:7.1f} µs per decision ({micros / linucb:.1f}× linucb)"
        )
    verdict = "met" if worst <= 150.0 else "NOT met"
    print(f"target ≤ 150 µs per VW decision, example building included: {verdict} ({worst:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
