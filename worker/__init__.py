"""The prunescope worker: the pruning/training engine (torch only) and, beside it, the Celery tasks."""
