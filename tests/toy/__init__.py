"""A toy benchmark, added the way a new benchmark is: one stage-one adapter (adapter.py) and
one stage-two Benchmark (benchmark.py), each put into its stage's dict (tests/test_benchmarks.py)."""
