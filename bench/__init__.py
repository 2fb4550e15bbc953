"""Benchmarks: `python -m bench` (or `make bench`) runs every `bench/bench_*.py`
module and prints each figure with a ratio against a baseline measured in
the same run, so the numbers mean something on any machine."""
