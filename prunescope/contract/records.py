"""What a run records: per-layer stats, the epoch record, the final summary and a mask snapshot's payload."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_DIM = 2**31 - 1  # one tensor dimension; larger shapes are refused as bad input
MAX_LAYER_WEIGHTS = 2**31 - 1  # weights in one layer (a mask snapshot's declared size is bounded by settings)
MAX_COUNT = 2**62  # non-zero / total weight counts, far inside SQL BIGINT
MAX_LAYERS = 1000
MAX_ATTEMPT = 2**31 - 1
MAX_FREE_FORM_DEPTH = 32
MAX_FREE_FORM_ITEMS = 10_000
# A prunable layer's name, as in LayerStats and as a key of a report's masks (they are looked up by it): a PyTorch
# parameter name (`features.0.weight`, a ModuleDict's `enc/fc` or `слой`: PyTorch refuses only "" and "." in a
# module's name), so anything but control characters (PostgreSQL cannot store a NUL). An exported npz entry is made
# safe from it where it is a path (`backend.results.service.npz_keys`); a CSV cell where it is a formula.
CONTROL_CHARACTERS = r"\x00-\x1f\x7f"  # in a regex class: what a name on one line cannot hold
LAYER_NAME_PATTERN = rf"^[^{CONTROL_CHARACTERS}]+$"
LayerName = Annotated[str, Field(min_length=1, max_length=200, pattern=LAYER_NAME_PATTERN,
                                 examples=["features.0.weight"])]


def check_text(value: str, where: str) -> None:
    """Refuse text a database cannot store: NUL, or a lone surrogate (not UTF-8)."""
    if "\x00" in value:
        raise ValueError(f"{where} contains NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{where} is not valid Unicode (lone surrogate)") from exc


def free_form_json(value: dict[str, Any], what: str = "config") -> dict[str, Any]:
    """Free-form JSON a user sends (a tracked run's config, a summary's own fields, a sweep's base): of bounded
    depth and size, finite numbers and storable strings; anything deeper or larger would be stored and then
    break, or slow, every later read of it. `what` names it in the messages."""
    budget = [MAX_FREE_FORM_ITEMS]

    def visit(node: Any, depth: int, path: str) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError(f"{what} holds more than {MAX_FREE_FORM_ITEMS} values")
        if depth > MAX_FREE_FORM_DEPTH:
            raise ValueError(f"{what} is nested deeper than {MAX_FREE_FORM_DEPTH} levels at {path}")
        if isinstance(node, str):
            check_text(node, f"{what} value at {path}")
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError(f"{what} value at {path} is not a finite number")
        elif isinstance(node, int) and not isinstance(node, bool) and not -(2**63) <= node < 2**63:
            raise ValueError(f"{what} value at {path} is an integer beyond 64 bits")
        elif isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str):
                    raise ValueError(f"{what} keys must be strings at {path}")
                check_text(key, f"{what} key {path}.{key[:40]!r}")
                visit(item, depth + 1, f"{path}.{key[:40]}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                visit(item, depth + 1, f"{path}[{i}]")
        elif node is not None and not isinstance(node, bool | int | float):
            raise ValueError(f"{what} value at {path} is not JSON ({type(node).__name__})")

    visit(value, 0, what)
    return value


class Record(BaseModel):
    """Base of recorded shapes: unknown fields and NaN/Infinity are refused (a diverged loss is null)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


Shape = list[int]


MAX_HISTOGRAM_BINS = 64


class WeightHistogram(Record):
    """How many of a layer's weights fall in each magnitude bin (|w|, log-spaced edges; zeros left out)."""

    edges: list[float] = Field(min_length=2, max_length=MAX_HISTOGRAM_BINS + 1,
                               description="Bin edges of |w|, increasing; len(counts) + 1 values. Chosen per epoch "
                                           "to span the layer's non-zero |w|, on one fixed grid: log10 edges are "
                                           "multiples of the bin width (1/16 decade, wider only when the range "
                                           "needs more than 64 bins), so equal widths mean identical bins")
    counts: list[int] = Field(min_length=1, max_length=MAX_HISTOGRAM_BINS,
                              description="Non-zero weights per bin: the layer's parameter values (the dense "
                                          "weights for splice/feedback); exact zeros and non-finite values are "
                                          "left out")
    kept: list[int] | None = Field(default=None, max_length=MAX_HISTOGRAM_BINS,
                                   description="Of those, the weights the mask keeps; null for a dense run (no mask)")


class LayerStats(Record):
    """One prunable layer at the end of an epoch."""

    name: LayerName
    shape: list[int] = Field(max_length=8, description="The weight tensor's shape")
    sparsity: float = Field(ge=0, le=1)
    pruned: int = Field(default=0, ge=0, le=MAX_LAYER_WEIGHTS, description=(
        "Prune events since the last epoch: a weight dropped, regrown and dropped again (SET/RigL) counts twice, so "
        "this can exceed the layer's size; pruned - regrown is the net change (`/masks/{layer}/changes`)"))
    regrown: int = Field(default=0, ge=0, le=MAX_LAYER_WEIGHTS, description=(
        "Regrow events since the last epoch, counted as `pruned` is"))
    threshold: float | None = Field(default=None, description="The score cut used at the last mask update")
    histogram: WeightHistogram | None = Field(default=None, description="Weight magnitudes at the end of the epoch")


class EpochMetrics(Record):
    """The scalar part of an epoch record."""

    epoch: int = Field(ge=1, le=1000)
    train_loss: float | None = None
    train_acc: float | None = Field(default=None, ge=0, le=1)
    test_loss: float | None = None
    test_acc: float | None = Field(default=None, ge=0, le=1)
    lr: float | None = None
    sparsity: float | None = Field(default=None, ge=0, le=1)
    target_sparsity: float | None = Field(default=None, ge=0, le=1)
    nonzero: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    total: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    epoch_seconds: float | None = Field(default=None, ge=0)
    samples_per_s: float | None = Field(default=None, ge=0)


class EpochRecord(EpochMetrics):
    """One epoch as it was measured and stored."""

    layers: list[LayerStats] = Field(default=[], max_length=MAX_LAYERS)
    attempt: int | None = Field(default=None, ge=1, le=MAX_ATTEMPT,
                                description="The attempt (start of the run by a worker) that trained this epoch")
    extra: dict[str, float | None] | None = Field(default=None, max_length=500,
                                                  description="A tracked run's other scalars, as logged")


class RunSummary(Record):
    """How a run ended, as the engine measured it."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    final_test_acc: float | None = None
    best_test_acc: float | None = None
    final_sparsity: float | None = Field(default=None, ge=0, le=1)
    nonzero: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    total: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    flops: int | None = Field(default=None, ge=0, le=2**63 - 1)
    wall_seconds: float | None = Field(default=None, ge=0)
    epochs_done: int | None = Field(default=None, ge=0, le=1000)
    stopped: bool = False
    early_stop: str | None = Field(default=None, max_length=500, description=(
        "Why training ended before its last epoch although the run is complete (e.g. converged); a `completed` "
        "finish without it needs every epoch recorded"))

    @model_validator(mode="after")
    def _bounded_extra(self) -> RunSummary:
        # Its own fields are typed; the others are free-form and bounded as a tracked run's config is.
        if self.model_extra:
            free_form_json(self.model_extra, "summary")
        return self


MaskEncoding = Literal["key", "delta"]


class MaskPayload(Record):
    """One layer's mask snapshot on the wire (see `prunescope.maskcodec`)."""

    shape: list[int] = Field(max_length=8)
    encoding: MaskEncoding
    data: str = Field(description="base64 of the encoded mask (a key frame, or a delta against the previous epoch)")
