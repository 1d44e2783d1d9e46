"""The published results the Pareto chart can overlay: a shipped, cited table (`published.json`)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("published.json")


@cache
def _table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TABLE.read_text(encoding="utf-8"))
    return data


def published_results(*, model: str | None, dataset: str | None) -> list[dict[str, Any]]:
    """Published points for one model and dataset (none unless both are given: figures are never mixed)."""
    if not model or not dataset:
        return []
    table = _table()
    return [{"method": row["method"], "sparsity": row["sparsity"], "accuracy": round(1 - row["error"], 6),
             "error": row["error"], "source": table["sources"][row["source"]]}
            for row in table["results"] if row["model"] == model and row["dataset"] == dataset]
