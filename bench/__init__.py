"""Benchmarks: `python -m bench` is the harness; the other scripts here measure one layer each."""
