"""Benchmarks of the engine and the app, run from outside both (``plugin-bridge bench``)."""
