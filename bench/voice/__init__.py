"""Benchmarks: voice."""
