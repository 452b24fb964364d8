"""Benchmarks run side by side with their baselines; results in docs/MEASUREMENTS.md."""
