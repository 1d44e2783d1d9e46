"""The run config: one JSON document every interface (form, REST, CLI, SDK, engine) shares.

Each enumeration is one `Literal` alias; `/api/options` and the dashboard read their lists from here.
Cross-field rules raise errors located at every field involved, so a form marks them without parsing prose.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from prunescope.contract.base import Loc, Problem, Strict, choices, raise_problems
from prunescope.contract.datasets import TRAIN_SAMPLES, steps_per_epoch
from prunescope.contract.extensions import builtin_or_registered
from prunescope.contract.pruning_rules import dense_recovery_end_problem, drop_phase_problem, pruning_problems, within
from prunescope.contract.records import CONTROL_CHARACTERS
from prunescope.contract.sources import (
    PLUGIN_NAME,
    WIDTH_MODELS,
    DatasetName,
    ModelName,
    PluginParams,
    data_dir_relative,
)

Device = Literal["auto", "cpu", "cuda"]
Optimizer = Literal["sgd", "adam", "adamw"]
LrSchedule = Literal["constant", "cosine", "step", "onecycle"]
Criterion = Literal["magnitude", "gradient", "movement", "activation", "random"]
Granularity = Literal["unstructured", "neuron", "n:m"]
Scope = Literal["layer", "global"]
Distribution = Literal["uniform", "erk"]
ActivationStat = Literal["mean_abs", "apoz"]
ScheduleKind = Literal["one_shot", "linear", "cubic", "constant"]
RecoveryKind = Literal["none", "splice", "random", "gradient", "feedback"]
DropDecay = Literal["cosine", "constant"]
Precision = Literal["fp32", "bf16", "fp16"]

#: Recoveries whose parameters keep the dense weights (the mask only gates the forward pass).
DENSE_RECOVERIES: tuple[RecoveryKind, ...] = ("splice", "feedback")
#: Recoveries that drop and regrow at a fixed sparsity (SET, RigL).
REGROWTH_RECOVERIES: tuple[RecoveryKind, ...] = ("random", "gradient")

NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL: refuse it as bad input, not a 500
# A label shown on one line (a run's, sweep's or tracked scalar's name, a tag): no control character either. A name
# holding a newline, a bell or an escape sequence was stored as sent, and broke the runs list, the CLI's table and CSV.
ONE_LINE = rf"^[^{CONTROL_CHARACTERS}]*$"
MAX_EPOCHS = 1000


class ModelConfig(Strict):
    name: str = Field(default="lenet300_100", pattern=PLUGIN_NAME,
                      description="A built-in model (`/api/options` lists them) or a plugin model an online "
                                  "worker offers.")
    hidden: list[Annotated[int, Field(ge=1, le=65536)]] | None = Field(
        default=None, max_length=32, description="Hidden layer widths, for `mlp` only ([]: a linear classifier; "
                                                 "unset: the default widths)."
    )
    width_multiplier: float | None = Field(
        default=None, gt=0, le=16, description="Scales every channel width of resnet*, vgg16_bn and wrn22_2 "
                                               "(default 1: the paper's widths).")
    params: PluginParams = Field(default=None, max_length=32, description="A plugin model's build() kwargs.")

    @model_validator(mode="after")
    def _fields_fit_the_model(self) -> ModelConfig:
        problems = []
        if self.hidden is not None and self.name != "mlp":
            problems.append(Problem("model.hidden applies only to model.name 'mlp'", ("hidden",), ("name",)))
        if self.width_multiplier is not None and self.name not in WIDTH_MODELS:
            problems.append(Problem(f"model.width_multiplier applies only to {', '.join(WIDTH_MODELS)}",
                                    ("width_multiplier",), ("name",)))
        if self.params is not None and self.name in choices(ModelName):
            problems.append(Problem("model.params are for plugin models; built-in models take none",
                                    ("params",), ("name",)))
        raise_problems("ModelConfig", problems, {("hidden",): self.hidden, ("name",): self.name,
                                                 ("width_multiplier",): self.width_multiplier,
                                                 ("params",): self.params})
        return self


class DatasetConfig(Strict):
    name: str = Field(default="digits", pattern=PLUGIN_NAME,
                      description="A built-in dataset (`/api/options` lists them) or a plugin dataset an online "
                                  "worker offers.")
    limit: int | None = Field(default=None, ge=1, le=10_000_000, description="Use the first N training samples.")
    path: str | None = Field(default=None, min_length=1, max_length=400, pattern=NO_NUL,
                             description="image_folder: a folder inside the data directory (relative; it holds "
                                         "`train/` and `test/` (or `val/`), one sub-folder per class).")
    augment: bool | None = Field(default=None, description="Training-time augmentation: 1-channel images "
                                                           "(mnist, fashion_mnist, digits) shifted by up to 2 px, "
                                                           "no flip; colour images padded random crop (4 px) and "
                                                           "horizontal flip. Default: on for cifar10/cifar100 only.")
    params: PluginParams = Field(default=None, max_length=32, description="A plugin dataset's load() kwargs.")

    @model_validator(mode="after")
    def _fields_fit_the_dataset(self) -> DatasetConfig:
        problems = []
        if self.name == "image_folder":
            if self.path is None:
                problems.append(Problem("dataset 'image_folder' needs path: a folder inside the data directory",
                                        ("path",), ("name",)))
            elif not data_dir_relative(self.path):
                problems.append(Problem("dataset.path must be a relative path inside the data directory "
                                        "(no leading '/', '~' or '..')", ("path",)))
        elif self.path is not None:
            problems.append(Problem("dataset.path applies only to dataset 'image_folder'", ("path",), ("name",)))
        if self.params is not None and self.name in choices(DatasetName):
            problems.append(Problem("dataset.params are for plugin datasets; built-in datasets take none",
                                    ("params",), ("name",)))
        raise_problems("DatasetConfig", problems, {("path",): self.path, ("name",): self.name,
                                                   ("params",): self.params})
        return self


class TrainingConfig(Strict):
    epochs: int = Field(default=10, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(default=128, ge=1, le=65536)
    optimizer: Optimizer = "sgd"
    lr: float = Field(default=0.1, gt=0, le=100)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    lr_schedule: LrSchedule = "cosine"
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    precision: Precision = Field(
        default="fp32", description="Autocast compute precision; weights, masks and optimizer state stay fp32 "
                                    "(pruned weights stay exactly 0). bf16 runs on CPU and CUDA; fp16 needs CUDA "
                                    "and scales the loss (GradScaler).")
    channels_last: bool = Field(default=False, description="Channels-last memory format for conv models and "
                                                           "their inputs (faster convolutions on CUDA).")
    compile: bool = Field(default=False, description="torch.compile the model before training (pays a compile "
                                                     "time at start; the recorded model is the same).")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> TrainingConfig:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise_problems("TrainingConfig", [Problem("nesterov needs optimizer 'sgd' with momentum > 0",
                                                      ("nesterov",), ("momentum",))],
                           {("nesterov",): self.nesterov, ("momentum",): self.momentum})
        return self


class StdScaleThreshold(Strict):
    std_scale: float = Field(gt=0, le=100, description="Han et al.: θ = q · std of each layer's weights.")


class ScheduleConfig(Strict):
    """When masks change. Epochs count from 1; an update "at epoch e" happens after its last step (e's record
    shows it). Every kind honours `start_epoch` (`constant`: the target from then on, so SET/RigL use 0);
    `cubic` is Zhu & Gupta from 0 at start_epoch's update to the target at end_epoch's.
    """

    kind: ScheduleKind = "cubic"
    start_epoch: int = Field(default=1, ge=0, le=MAX_EPOCHS,
                             description="First mask update at the end of this epoch (0: before the first step, "
                                         "so the run is sparse from its start). Default: 1; 0 for kind "
                                         "constant (sparse from the start).")
    end_epoch: int | None = Field(default=None, ge=0, le=MAX_EPOCHS,
                                  description="Target sparsity reached at the end of this epoch; "
                                              "default: 3/4 of the epochs.")
    every_steps: int | None = Field(default=None, ge=1, le=1_000_000,
                                    description="Optimizer steps between mask updates, counted from the first "
                                                "update; one always happens at the end of end_epoch; default: "
                                                "once per epoch.")

    @model_validator(mode="before")
    @classmethod
    def _constant_starts_sparse(cls, data: Any) -> Any:
        # SET/RigL's schedule: a `constant` target from the first step unless start_epoch says otherwise (with the
        # default 1 its first epoch trained dense while its record said "sparsity 0.9").
        if isinstance(data, dict) and data.get("kind") == "constant" and data.get("start_epoch") is None:
            return {**data, "start_epoch": 0}
        return data

    def end_epoch_for(self, epochs: int) -> int:
        """The epoch whose end reaches the target in a run of `epochs` epochs (end_epoch, or its default)."""
        return self.end_epoch if self.end_epoch is not None else max(self.start_epoch, math.ceil(0.75 * epochs))


class RecoveryConfig(Strict):
    kind: RecoveryKind = "none"

    @field_validator("kind", mode="wrap")
    @classmethod
    def _kind_known(cls, value: Any, handler: Any) -> Any:
        return builtin_or_registered("recovery", value, handler)
    margin: float = Field(default=0.1, ge=0, lt=1, description="splice: hysteresis around θ.")
    drop_fraction: float = Field(default=0.3, gt=0, le=1, description="random/gradient: share dropped per update.")
    decay: DropDecay = "cosine"
    every_steps: int | None = Field(default=None, ge=1, le=1_000_000,
                                    description="random/gradient: optimizer steps between drop-and-grow updates. "
                                                "Empty: 100, or once per epoch when an epoch has fewer steps.")
    end_epoch: int | None = Field(default=None, ge=0, le=MAX_EPOCHS,
                                  description="Masks stop changing after this epoch. Empty: splice/feedback "
                                              "go on to the last epoch; random/gradient stop at the "
                                              "schedule's end_epoch.")

    @model_serializer(mode="wrap")
    def _unset_interval_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Stored and dispatched configs leave an unset every_steps out: a worker from before it could be unset
        # (an int, default 100) refused `null` and failed every pruned run an upgraded API sent it.
        data: dict[str, Any] = handler(self)
        if data.get("every_steps", 0) is None:
            del data["every_steps"]
        return data


class RegularizationConfig(Strict):
    l1: float = Field(default=0.0, ge=0, le=10)


Glob = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]


class LayersConfig(Strict):
    include: list[Glob] = Field(default=["*"], max_length=64)
    exclude: list[Glob] = Field(default=[], max_length=64)


class PruningConfig(Strict):
    criterion: Criterion = "magnitude"
    granularity: Granularity = "unstructured"
    n_m: tuple[Annotated[int, Field(ge=1, le=64)], Annotated[int, Field(ge=2, le=64)]] | None = None
    scope: Scope = "layer"
    distribution: Distribution = "uniform"
    activation_stat: ActivationStat = "mean_abs"
    target_sparsity: float | None = Field(default=None, ge=0, lt=1)
    threshold: float | StdScaleThreshold | None = None
    schedule: ScheduleConfig = ScheduleConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    regularization: RegularizationConfig = RegularizationConfig()
    layers: LayersConfig = LayersConfig()

    @field_validator("criterion", mode="wrap")
    @classmethod
    def _criterion_known(cls, value: Any, handler: Any) -> Any:
        return builtin_or_registered("criterion", value, handler)

    @field_validator("threshold")
    @classmethod
    def _threshold_positive(cls, value: float | StdScaleThreshold | None) -> float | StdScaleThreshold | None:
        if isinstance(value, float) and value < 0:
            raise ValueError("threshold must be ≥ 0")
        return value

    @model_validator(mode="after")
    def _combinations(self) -> PruningConfig:
        values: dict[Loc, Any] = {
            ("granularity",): self.granularity, ("n_m",): self.n_m, ("threshold",): self.threshold,
            ("target_sparsity",): self.target_sparsity, ("criterion",): self.criterion,
            ("recovery", "kind"): self.recovery.kind, ("scope",): self.scope, ("distribution",): self.distribution,
            ("schedule", "start_epoch"): self.schedule.start_epoch, ("schedule", "end_epoch"): self.schedule.end_epoch,
        }
        raise_problems("PruningConfig", pruning_problems(self), values)
        return self

    @property
    def dense_weights(self) -> bool:
        """splice/feedback: parameters hold the dense weights; the mask only gates the forward pass."""
        return self.recovery.kind in DENSE_RECOVERIES


RUN_CONFIG_EXAMPLE: dict[str, Any] = {
    "name": "lenet300-dns",
    "tags": ["mnist"],
    "device": "auto",
    "model": {"name": "lenet300_100"},
    "dataset": {"name": "mnist"},
    "training": {"epochs": 30, "batch_size": 128, "optimizer": "sgd", "lr": 0.1,
                 "momentum": 0.9, "weight_decay": 5e-5, "lr_schedule": "cosine", "seed": 0},
    "pruning": {"criterion": "magnitude", "granularity": "unstructured", "scope": "global",
                "target_sparsity": 0.98,
                "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 20, "every_steps": 100},
                "recovery": {"kind": "splice"}, "threshold": None,
                "regularization": {"l1": 0.0}, "layers": {"include": ["*"], "exclude": []}},
}

Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=ONE_LINE)]


class RunConfig(Strict):
    """A pruning run: what to train, how, and how to prune it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False,
                              json_schema_extra={"examples": [RUN_CONFIG_EXAMPLE]})

    name: str = Field(default="untitled", min_length=1, max_length=200, pattern=ONE_LINE)
    tags: list[Tag] = Field(default=[], max_length=32)
    device: Device = "auto"
    preset: str | None = Field(default=None, max_length=64, pattern=ONE_LINE,
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
        problems: list[Problem] = []
        values: dict[Loc, Any] = {}
        loc: Loc
        for loc, value in ((("pruning", "schedule", "end_epoch"), p.schedule.end_epoch),
                           (("pruning", "recovery", "end_epoch"), p.recovery.end_epoch),
                           (("pruning", "schedule", "start_epoch"), p.schedule.start_epoch)):
            if value is not None and value > epochs:
                label = ".".join(str(part) for part in loc)
                problems.append(Problem(f"{label} ({value}) is after the last epoch ({epochs})",
                                        loc, ("training", "epochs")))
                values[loc] = value
        if (why := dense_recovery_end_problem(p, epochs)) is not None:
            problems.append(Problem(why, ("pruning", "recovery", "end_epoch"), ("pruning", "schedule", "end_epoch")))
            values[("pruning", "recovery", "end_epoch")] = p.recovery.end_epoch
            values[("pruning", "schedule", "end_epoch")] = p.schedule.end_epoch
        steps = steps_per_epoch(self.dataset.name, self.dataset.limit, self.training.batch_size)
        # With epoch fields past the last epoch read as the last one, so that one 422 says all there is to change.
        if steps is not None and (why := drop_phase_problem(within(p, epochs), epochs, steps)) is not None:
            # The engine refuses it at start; for a built-in dataset the steps are known here, so the form is told.
            problems.append(Problem(why, ("pruning", "recovery", "every_steps"), ("pruning", "recovery", "end_epoch")))
            values[("pruning", "recovery", "every_steps")] = p.recovery.every_steps
            values[("pruning", "recovery", "end_epoch")] = p.recovery.end_epoch
        values[("training", "epochs")] = epochs
        raise_problems("RunConfig", problems, values)
        return self

    @model_validator(mode="after")
    def _fp16_needs_cuda(self) -> RunConfig:
        if self.training.precision == "fp16" and self.device == "cpu":
            raise_problems("RunConfig", [Problem("training.precision 'fp16' needs a CUDA device: use 'bf16' on a "
                                                 "CPU, or device 'cuda' or 'auto'", ("training", "precision"),
                                                 ("device",))],
                           {("training", "precision"): "fp16", ("device",): "cpu"})
        return self

    @model_validator(mode="after")
    def _neurons_can_return(self) -> RunConfig:
        p = self.pruning
        if (p is not None and p.granularity == "neuron" and p.dense_weights
                and self.model.name in choices(ModelName)):
            # Measured: 24 runs of neuron + splice/feedback regrew nothing and matched recovery 'none' bit for bit.
            raise_problems("RunConfig", [Problem(
                f"recovery '{p.recovery.kind}' cannot bring a pruned neuron back in a built-in model: its units "
                "feed a ReLU, so a pruned neuron outputs 0 and its dense weights get no gradient (it would train as "
                "recovery 'none'); use recovery 'none' with granularity 'neuron', or granularity 'unstructured'",
                ("pruning", "recovery", "kind"), ("pruning", "granularity"))],
                {("pruning", "recovery", "kind"): p.recovery.kind, ("pruning", "granularity"): p.granularity})
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


def parse_pruning(data: Any) -> PruningConfig:
    """Validate a `pruning` block on its own (the SDK's `Pruner(model, optimizer, block)`)."""
    if isinstance(data, PruningConfig):
        return data
    return PruningConfig.model_validate(data)


OPTION_ALIASES: dict[str, Any] = {
    "models": ModelName, "datasets": DatasetName, "devices": Device, "optimizers": Optimizer,
    "lr_schedules": LrSchedule, "criteria": Criterion, "granularities": Granularity, "scopes": Scope,
    "distributions": Distribution, "activation_stats": ActivationStat, "schedules": ScheduleKind,
    "recoveries": RecoveryKind, "drop_decays": DropDecay, "precisions": Precision,
}


def option_lists() -> dict[str, Any]:
    """Every enumeration of the config by its `/api/options` key, and the built-in datasets' training sizes."""
    return {**{key: choices(alias) for key, alias in OPTION_ALIASES.items()}, "train_samples": dict(TRAIN_SAMPLES)}
