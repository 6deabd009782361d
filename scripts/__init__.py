"""Operator and developer scripts: synthetic traffic, the dev launcher, benchmarks."""
