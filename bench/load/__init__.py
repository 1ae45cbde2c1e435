"""Benchmarks: load."""
