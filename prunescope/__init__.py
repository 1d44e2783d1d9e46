"""prunescope: a web dashboard and engine for dynamic neural-network pruning experiments."""

__version__ = "0.1.0"
