"""The pruning and training engine: torch, numpy and the contract only (no Celery, HTTP or database)."""
