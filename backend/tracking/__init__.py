"""Tracked runs: runs a user's own script records through the SDK."""
