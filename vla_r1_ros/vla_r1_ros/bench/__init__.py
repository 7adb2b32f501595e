"""Benchmarks behind `vla-r1 bench`."""
