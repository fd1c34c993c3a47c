"""Loaders for third-party reference implementations the tests compare against (never shipped)."""
