"""Sweeps: a grid of runs created in one transaction from a base config."""
