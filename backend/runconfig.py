"""The run-config contract: one JSON document every interface (form, REST, CLI) shares."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MODELS = ("lenet300_100", "lenet5", "mlp", "small_cnn")
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "synthetic")
CRITERIA = ("magnitude", "gradient", "movement", "activation", "random")
GRANULARITIES = ("unstructured", "neuron", "n:m")
SCHEDULES = ("one_shot", "linear", "cubic", "constant")
RECOVERIES = ("none", "splice", "random", "gradient", "feedback")
OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("constant", "cosine", "step", "onecycle")
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL: refuse it as bad input, not a 500


class Strict(BaseModel):
    """Base for every config block: unknown fields and non-finite numbers are rejected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelConfig(Strict):
    name: Literal["lenet300_100", "lenet5", "mlp", "small_cnn"] = "lenet300_100"
    hidden: list[Annotated[int, Field(ge=1, le=65536)]] | None = Field(
        default=None, max_length=32, description="Hidden layer widths, for `mlp` only."
    )

    @model_validator(mode="after")
    def _hidden_only_for_mlp(self) -> ModelConfig:
        if self.hidden is not None and self.name != "mlp":
            raise ValueError("model.hidden applies only to model.name 'mlp'")
        return self


class DatasetConfig(Strict):
    name: Literal["digits", "mnist", "fashion_mnist", "cifar10", "synthetic"] = "digits"
    limit: int | None = Field(default=None, ge=1, le=10_000_000, description="Use the first N training samples.")


class TrainingConfig(Strict):
    epochs: int = Field(default=10, ge=1, le=1000)
    batch_size: int = Field(default=128, ge=1, le=65536)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(default=0.1, gt=0, le=100)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    lr_schedule: Literal["constant", "cosine", "step", "onecycle"] = "cosine"
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class StdScaleThreshold(Strict):
    std_scale: float = Field(gt=0, le=100, description="Han et al.: θ = q · std of each layer's weights.")


class ScheduleConfig(Strict):
    kind: Literal["one_shot", "linear", "cubic", "constant"] = "cubic"
    start_epoch: int = Field(default=1, ge=0, le=1000)
    end_epoch: int | None = Field(default=None, ge=0, le=1000, description="Default: 3/4 of the epochs.")
    every_steps: int | None = Field(default=None, ge=1, le=1_000_000,
                                    description="Optimizer steps between mask updates; default: once per epoch.")


class RecoveryConfig(Strict):
    kind: Literal["none", "splice", "random", "gradient", "feedback"] = "none"
    margin: float = Field(default=0.1, ge=0, lt=1, description="splice: hysteresis around θ.")
    drop_fraction: float = Field(default=0.3, gt=0, le=1, description="random/gradient: share dropped per update.")
    decay: Literal["cosine", "constant"] = "cosine"
    every_steps: int = Field(default=100, ge=1, le=1_000_000)
    end_epoch: int | None = Field(default=None, ge=0, le=1000, description="random/gradient: stop updating masks.")


class RegularizationConfig(Strict):
    l1: float = Field(default=0.0, ge=0, le=10)


Glob = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]


class LayersConfig(Strict):
    include: list[Glob] = Field(default=["*"], max_length=64)
    exclude: list[Glob] = Field(default=[], max_length=64)


class PruningConfig(Strict):
    criterion: Literal["magnitude", "gradient", "movement", "activation", "random"] = "magnitude"
    granularity: Literal["unstructured", "neuron", "n:m"] = "unstructured"
    n_m: tuple[Annotated[int, Field(ge=1, le=64)], Annotated[int, Field(ge=2, le=64)]] | None = None
    scope: Literal["layer", "global"] = "layer"
    distribution: Literal["uniform", "erk"] = "uniform"
    activation_stat: Literal["mean_abs", "apoz"] = "mean_abs"
    target_sparsity: float | None = Field(default=None, ge=0, lt=1)
    threshold: float | StdScaleThreshold | None = None
    schedule: ScheduleConfig = ScheduleConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    regularization: RegularizationConfig = RegularizationConfig()
    layers: LayersConfig = LayersConfig()

    @field_validator("threshold")
    @classmethod
    def _threshold_positive(cls, value: float | StdScaleThreshold | None) -> float | StdScaleThreshold | None:
        if isinstance(value, float) and value < 0:
            raise ValueError("threshold must be ≥ 0")
        return value

    @model_validator(mode="after")
    def _combinations(self) -> PruningConfig:
        problems = pruning_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def pruning_problems(p: PruningConfig) -> list[str]:
    """Every rule a pruning block must satisfy beyond single-field types, as user-readable messages."""
    out: list[str] = []
    if p.granularity == "n:m":
        if p.n_m is None:
            out.append("granularity 'n:m' needs n_m, e.g. [2, 4]")
        elif p.n_m[0] >= p.n_m[1]:
            out.append("n_m [n, m] needs n < m")
        if p.threshold is not None or p.target_sparsity is not None:
            out.append("granularity 'n:m' sets the sparsity (1 - n/m): leave threshold and target_sparsity null")
        if p.criterion == "activation":
            out.append("criterion 'activation' scores neurons: use granularity 'neuron'")
        if p.recovery.kind in ("random", "gradient", "splice"):
            out.append(f"recovery '{p.recovery.kind}' is not defined for granularity 'n:m'")
    else:
        if p.n_m is not None:
            out.append("n_m applies only to granularity 'n:m'")
        if p.threshold is None and p.target_sparsity is None:
            out.append("set target_sparsity (with a schedule) or threshold")
        if p.threshold is not None and p.target_sparsity is not None:
            out.append("set either target_sparsity or threshold, not both")
    if p.criterion == "activation" and p.granularity == "unstructured":
        out.append("criterion 'activation' scores neurons/channels: use granularity 'neuron', not 'unstructured'")
    if p.recovery.kind in ("random", "gradient"):
        if p.granularity != "unstructured":
            out.append(f"recovery '{p.recovery.kind}' needs granularity 'unstructured'")
        if p.target_sparsity is None:
            out.append(f"recovery '{p.recovery.kind}' keeps a fixed sparsity: set target_sparsity")
    if p.distribution == "erk" and p.scope != "layer":
        out.append("distribution 'erk' allocates per-layer densities: use scope 'layer'")
    if p.threshold is not None and p.scope == "global" and isinstance(p.threshold, StdScaleThreshold):
        out.append("threshold {'std_scale': q} is per layer: use scope 'layer'")
    sched = p.schedule
    if sched.end_epoch is not None and sched.end_epoch < sched.start_epoch:
        out.append("schedule.end_epoch must be ≥ schedule.start_epoch")
    return out


class RunConfig(Strict):
    """A pruning run: what to train, how, and how to prune it."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "name": "lenet300-dns",
                    "tags": ["mnist"],
                    "device": "auto",
                    "model": {"name": "lenet300_100"},
                    "dataset": {"name": "mnist"},
                    "training": {"epochs": 30, "batch_size": 128, "optimizer": "sgd", "lr": 0.1,
                                 "momentum": 0.9, "weight_decay": 5e-5, "lr_schedule": "cosine", "seed": 0},
                    "pruning": {"criterion": "magnitude", "granularity": "unstructured", "scope": "global",
                                "target_sparsity": 0.98,
                                "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 20,
                                             "every_steps": 100},
                                "recovery": {"kind": "splice"}, "threshold": None,
                                "regularization": {"l1": 0.0}, "layers": {"include": ["*"], "exclude": []}},
                }
            ]
        },
    )

    name: str = Field(default="untitled", min_length=1, max_length=200, pattern=NO_NUL)
    tags: list[Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]] = Field(default=[], max_length=32)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    preset: str | None = Field(default=None, max_length=64, pattern=NO_NUL,
                               description="The preset this config started from.")
    model: ModelConfig = ModelConfig()
    dataset: DatasetConfig = DatasetConfig()
    training: TrainingConfig = TrainingConfig()
    pruning: PruningConfig | None = None

    @model_validator(mode="after")
    def _epochs_cover_schedule(self) -> RunConfig:
        p = self.pruning
        if p is None:
            return self
        epochs = self.training.epochs
        for label, value in (("pruning.schedule.end_epoch", p.schedule.end_epoch),
                             ("pruning.recovery.end_epoch", p.recovery.end_epoch),
                             ("pruning.schedule.start_epoch", p.schedule.start_epoch)):
            if value is not None and value > epochs:
                raise ValueError(f"{label} ({value}) is after the last epoch ({epochs})")
        return self

    def strategy(self) -> str:
        """A short label of the pruning strategy, for lists and charts."""
        p = self.pruning
        if p is None:
            return "dense"
        label = f"{p.criterion}/{p.granularity}"
        if p.recovery.kind != "none":
            label += f"+{p.recovery.kind}"
        return label


def parse_run_config(data: Any) -> RunConfig:
    """Validate a decoded JSON document as a run config (raises pydantic.ValidationError)."""
    return RunConfig.model_validate(data)
