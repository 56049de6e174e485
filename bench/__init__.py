"""Benchmarks and analyses of the router; see bench/README.md."""

from pathlib import Path

ROUTERBENCH_TRAIN = Path(__file__).resolve().parents[1] / "data" / "routerbench" / "train.csv.gz"
"""The RouterBench outcome table kept in the repository (data/routerbench/README.md)."""
