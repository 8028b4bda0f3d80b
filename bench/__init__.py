"""Benchmarks: each runs with no arguments and prints one JSON line last."""
