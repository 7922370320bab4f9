"""Benchmarks: one module per figure set, each exposing run(quick: bool = False) -> dict."""
