"""A PyTorch Lightning callback that tracks a `Trainer.fit` as a prunescope run (`pip install prunescope[lightning]`).

    pruner = prunescope.Pruner(model, optimizer, {"target_sparsity": 0.9}, epochs=E, steps_per_epoch=N)
    trainer = Trainer(max_epochs=E, callbacks=[PrunescopeCallback(name="my-run", pruner=pruner)])

Epoch records come from `trainer.callback_metrics` at the end of each training epoch (after validation);
`val_loss`/`val_acc` land in the record's test columns, every other scalar is kept as it is named (a metric named
`step` or `epoch` is left out: the record's own step and epoch say it). A value the API would refuse (`val_acc` in
percent) is left out of the record with a warning, not raised: it does not end the fit.
"""

from __future__ import annotations

import traceback
import warnings
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from pydantic import ValidationError

from prunescope.contract.config import MAX_EPOCHS
from prunescope.sdk.run import Run, init

METRIC_NAMES = {"val_loss": "test_loss", "val_acc": "test_acc", "valid_loss": "test_loss", "valid_acc": "test_acc"}
# run.log's own arguments: a module's `self.log("step", ...)` or `("epoch", ...)` is what the record's step and
# epoch already say (passed next to them, it was a TypeError that ended the fit), so it is left out.
RESERVED = frozenset({"step", "epoch"})


def _scalars(metrics: dict[str, Any], names: dict[str, str]) -> dict[str, tuple[str, float]]:
    """Each scalar metric under the name it is recorded as, with the name the module logged it as."""
    out: dict[str, tuple[str, float]] = {}
    for key, value in metrics.items():
        if hasattr(value, "numel") and value.numel() != 1:
            continue  # only scalars are tracked
        name = names.get(key, key).replace("/", ".")
        if name not in RESERVED:
            out[name] = (key, float(value.item() if hasattr(value, "item") else value))
    return out


def _refused(exc: ValidationError, values: dict[str, Any]) -> dict[str, str]:
    """The logged values a refusal names (by the name recorded), each with why."""
    out: dict[str, str] = {}
    for error in exc.errors():
        name = next((part for part in error["loc"] if isinstance(part, str) and part in values), None)
        if name is not None:
            out.setdefault(name, error["msg"])
    return out


class PrunescopeCallback(Callback):
    """Starts a tracked run when fitting starts (or uses `run`), logs each epoch and every `log_every_n_steps`
    steps, watches `pruner` if given, and finishes the run: completed, or failed with the exception."""

    def __init__(self, run: Run | None = None, pruner: Any = None, *, log_every_n_steps: int = 50,
                 metric_names: dict[str, str] | None = None, **init_kwargs: Any) -> None:
        super().__init__()
        self.run = run
        self.pruner = pruner
        self.log_every_n_steps = log_every_n_steps
        self.metric_names = {**METRIC_NAMES, **(metric_names or {})}
        self.init_kwargs = init_kwargs
        self._val_keys: set[str] = set()
        self._before_val: dict[str, Any] = {}
        self._val_epoch: int | None = None
        self._warned: set[str] = set()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.run is not None and self.run.finished:
            self.run = None  # a second fit with the same callback is a new run
        if self.run is None:
            epochs = trainer.max_epochs if 0 < (trainer.max_epochs or 0) <= MAX_EPOCHS else None
            self.run = init(**{"epochs": epochs, **self.init_kwargs})
        if self.pruner is not None:
            self.run.watch(self.pruner)
        self._val_keys = set()  # what validation logs (callback_metrics keeps it until the next validation)
        self._before_val = {}
        self._val_epoch = None
        self._warned = set()

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._before_val = dict(trainer.callback_metrics)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        self._val_keys |= {k for k, v in metrics.items() if k not in self._before_val or self._before_val[k] is not v}
        self._val_epoch = trainer.current_epoch

    def _metrics(self, trainer: Trainer, with_validation: bool) -> dict[str, tuple[str, float]]:
        """The scalars to record; validation's only in an epoch that validated (not an earlier epoch's values)."""
        metrics = {k: v for k, v in trainer.callback_metrics.items() if with_validation or k not in self._val_keys}
        return _scalars(metrics, self.metric_names)

    def _log(self, where: str, metrics: dict[str, tuple[str, float]], epoch: int, step: int | None = None) -> None:
        """`run.log(epoch=, step=, ...)` without the values the API would refuse (an accuracy in percent, a name too
        long): each is left out with a warning, once per metric and fit, so that one bad value does not end the
        training (as `run.log` raising it would). A refusal that names no value (too many scalars) skips the record."""
        assert self.run is not None
        values: dict[str, Any] = {name: value for name, (_, value) in metrics.items()}
        while True:
            try:
                self.run.log(epoch=epoch, step=step, **values)
                return
            except ValidationError as exc:
                refused = _refused(exc, values)
                if not refused:
                    warnings.warn(f"prunescope: {where} was not recorded: {exc}", stacklevel=2)
                    return
                for name, why in refused.items():
                    values.pop(name)
                    if name not in self._warned:
                        self._warned.add(name)
                        logged = metrics[name][0]
                        label = logged if logged == name else f"{logged} (recorded as {name})"
                        warnings.warn(f"prunescope: {label} = {metrics[name][1]!r} is refused at {where} and left "
                                      f"out of the record ({why}); later refused values of it are left out without "
                                      "another warning", stacklevel=2)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.run is not None and self.log_every_n_steps and trainer.global_step % self.log_every_n_steps == 0:
            self._log(f"step {trainer.global_step}", self._metrics(trainer, with_validation=False),
                      step=trainer.global_step, epoch=trainer.current_epoch + 1)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.run is not None:
            validated = self._val_epoch == trainer.current_epoch
            self._log(f"epoch {trainer.current_epoch + 1}", self._metrics(trainer, with_validation=validated),
                      epoch=trainer.current_epoch + 1)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.run is not None:
            self.run.finish("cancelled" if trainer.interrupted else "completed")

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self.run is not None:
            from prunescope.sdk.transport import RunCancelled

            # Ctrl-C: Lightning stops the fit gracefully and then exits; the run was stopped on purpose.
            if isinstance(exception, RunCancelled | KeyboardInterrupt):
                self.run.finish("cancelled")
                return
            text = "".join(traceback.format_exception(exception)[-12:])
            self.run.finish("failed", error=f"{type(exception).__name__}: {exception}\n{text}")
