"""Benchmarks and load generators for ceir."""
