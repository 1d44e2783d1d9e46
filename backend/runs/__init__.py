"""Runs: submission, listing, status, cancel, and what they recorded."""
