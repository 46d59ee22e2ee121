"""Helpers for the tests: child programs and process utilities (no fixtures shared via conftest)."""
