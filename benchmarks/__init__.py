"""Benchmarks: scripts that time the library side by side and write JSON + Markdown results."""
