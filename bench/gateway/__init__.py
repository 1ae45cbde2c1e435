"""Benchmarks: gateway."""
