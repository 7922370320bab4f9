"""Benchmarks: one module each, exposing run(quick: bool = False) -> dict of named figures."""
