"""Response shapes of chart series, comparisons, the Pareto front and exports."""

from __future__ import annotations

from pydantic import BaseModel, Field

from backend.runs.schemas import EpochRecord, RunDetail


class Series(BaseModel):
    """One chart line: epochs on x, the metric on y (missing values left out)."""

    x: list[int]
    y: list[float]


class Metrics(BaseModel):
    """A run's chart series, each downsampled to at most `max_points` points keeping every bucket's extremes."""

    model_config = {"json_schema_extra": {"examples": [{
        "run_id": 7, "epochs_total": 30, "epochs_recorded": 3,
        "series": {"test_acc": {"x": [1, 2, 3], "y": [0.91, 0.95, 0.97]},
                   "sparsity": {"x": [1, 2, 3], "y": [0.0, 0.5, 0.9]}},
    }]}}

    run_id: int
    epochs_total: int = Field(description="Epochs the run is configured for")
    epochs_recorded: int = Field(description="Epochs recorded so far (before downsampling)")
    series: dict[str, Series]


class CompareRun(BaseModel):
    id: int
    name: str
    status: str
    strategy: str
    series: dict[str, Series]


class Comparison(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"runs": [
        {"id": 1, "name": "dense", "status": "completed", "strategy": "dense",
         "series": {"test_acc": {"x": [1, 2], "y": [0.9, 0.95]}}},
        {"id": 2, "name": "dns", "status": "completed", "strategy": "magnitude/unstructured+splice",
         "series": {"test_acc": {"x": [1, 2], "y": [0.89, 0.94]}}},
    ]}]}}

    runs: list[CompareRun]


class ParetoPoint(BaseModel):
    id: int
    name: str
    strategy: str
    sparsity: float = Field(description="Final overall sparsity")
    accuracy: float = Field(description="Final test accuracy")
    on_front: bool = Field(description="No other run is at least as sparse and as accurate, and better in one")
    preset: str | None = Field(default=None, description="The preset the run was started from")
    method: str = Field(default="", description="What to colour the point by: the preset, else the strategy")
    model: str = ""
    dataset: str = ""
    config_summary: str = Field(default="", description="One line of the run's hyperparameters")


class ParetoGroup(BaseModel):
    dataset: str
    model: str
    runs: int = Field(description="Completed runs of this model on this dataset")


class PublishedPoint(BaseModel):
    method: str
    sparsity: float
    accuracy: float = Field(description="1 - error")
    error: float = Field(description="Published test error")
    source: str = Field(description="The paper the figure comes from")


class Pareto(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{
        "points": [{"id": 1, "name": "dense", "strategy": "dense", "sparsity": 0.0, "accuracy": 0.98,
                    "on_front": True},
                   {"id": 2, "name": "gmp", "strategy": "magnitude/unstructured", "sparsity": 0.9,
                    "accuracy": 0.97, "on_front": True},
                   {"id": 3, "name": "random", "strategy": "random/unstructured", "sparsity": 0.8,
                    "accuracy": 0.9, "on_front": False}],
        "front": [1, 2],
    }]}}

    points: list[ParetoPoint]
    front: list[int] = Field(description="Ids of the runs on the front, by ascending sparsity")
    groups: list[ParetoGroup] = Field(default_factory=list, description=(
        "Every (dataset, model) pair with completed runs, the most common first: a chart shows one at a time"))
    published: list[PublishedPoint] = Field(default_factory=list, description=(
        "With `published=true` and both `model` and `dataset`: published results for them (MNIST LeNets)"))


class RunExport(BaseModel):
    """Everything a run recorded: `pandas.DataFrame(doc["epochs"])`, or
    `pandas.json_normalize(doc["epochs"], "layers", ["epoch"], record_prefix="layer.")` for per-layer rows."""

    run: RunDetail
    epochs: list[EpochRecord]
