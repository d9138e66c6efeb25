"""Fixtures that start a hub (in-process app and CLI subprocess)."""
