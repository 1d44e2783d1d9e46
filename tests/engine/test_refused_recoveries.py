"""Recoveries that cannot do what they are named for with some scores or thresholds are refused where set."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from prunescope.contract import parse_run_config


def pruning(**block: Any) -> dict[str, Any]:
    return {"dataset": {"name": "digits"}, "training": {"epochs": 6}, "pruning": block}


def test_std_scale_threshold_with_splice_is_refused_at_both_fields() -> None:
    # Accepted before: masks re-decided ~140 times over six epochs on digits and not one weight regrown.
    config = pruning(threshold={"std_scale": 1.0}, schedule={"kind": "cubic", "end_epoch": 2, "every_steps": 1},
                     recovery={"kind": "splice", "margin": 0.1})
    with pytest.raises(ValidationError) as caught:
        parse_run_config(config)
    located = {tuple(error["loc"]) for error in caught.value.errors()}
    assert {("pruning", "threshold"), ("pruning", "recovery", "kind")} <= located
    assert "never regrows a weight" in str(caught.value)
    parse_run_config(pruning(threshold=0.05, schedule={"kind": "cubic", "end_epoch": 2},
                             recovery={"kind": "splice"}))  # an absolute threshold regrows
    parse_run_config(pruning(threshold={"std_scale": 1.0}, schedule={"kind": "one_shot", "start_epoch": 1}))


@pytest.mark.parametrize("recovery", ["splice", "feedback"])
def test_random_scores_with_dense_recoveries_are_refused(recovery: str) -> None:
    # Accepted before: feedback swapped 1835 of ~2091 kept weights in one epoch; accuracy 0.87 -> 0.24.
    config = pruning(criterion="random", target_sparsity=0.9, schedule={"kind": "cubic", "end_epoch": 3},
                     recovery={"kind": recovery})
    with pytest.raises(ValidationError) as caught:
        parse_run_config(config)
    located = {tuple(error["loc"]) for error in caught.value.errors()}
    assert {("pruning", "criterion"), ("pruning", "recovery", "kind")} <= located
    assert "draws a new random mask at every update" in str(caught.value)
    for fine in ("none", "random"):
        parse_run_config(pruning(criterion="random", target_sparsity=0.9, schedule={"kind": "cubic", "end_epoch": 3},
                                 recovery={"kind": fine}))
