"""Benchmarks (`python -m bench`); each area is a package run with `python -m bench.<area>…`."""
