"""Benchmarks: tools."""
