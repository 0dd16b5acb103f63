"""Applications served by the benchmarks."""
