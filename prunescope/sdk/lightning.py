"""A PyTorch Lightning callback that tracks a `Trainer.fit` as a prunescope run (`pip install prunescope[lightning]`).

    pruner = prunescope.Pruner(model, optimizer, {"target_sparsity": 0.9}, epochs=E, steps_per_epoch=N)
    trainer = Trainer(max_epochs=E, callbacks=[PrunescopeCallback(name="my-run", pruner=pruner)])

Epoch records come from `trainer.callback_metrics` at the end of each training epoch (after validation);
`val_loss`/`val_acc` land in the record's test columns, every other scalar is kept as it is named.
"""

from __future__ import annotations

import traceback
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from prunescope.contract.config import MAX_EPOCHS
from prunescope.sdk.run import Run, init

METRIC_NAMES = {"val_loss": "test_loss", "val_acc": "test_acc", "valid_loss": "test_loss", "valid_acc": "test_acc"}


def _scalars(metrics: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if hasattr(value, "numel") and value.numel() != 1:
            continue  # only scalars are tracked
        name = names.get(key, key).replace("/", ".")
        out[name] = float(value.item() if hasattr(value, "item") else value)
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

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._before_val = dict(trainer.callback_metrics)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        self._val_keys |= {k for k, v in metrics.items() if k not in self._before_val or self._before_val[k] is not v}
        self._val_epoch = trainer.current_epoch

    def _metrics(self, trainer: Trainer, with_validation: bool) -> dict[str, Any]:
        """The scalars to record; validation's only in an epoch that validated (not an earlier epoch's values)."""
        metrics = {k: v for k, v in trainer.callback_metrics.items() if with_validation or k not in self._val_keys}
        return _scalars(metrics, self.metric_names)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.run is not None and self.log_every_n_steps and trainer.global_step % self.log_every_n_steps == 0:
            values = self._metrics(trainer, with_validation=False)
            self.run.log(step=trainer.global_step, epoch=trainer.current_epoch + 1, **values)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.run is not None:
            validated = self._val_epoch == trainer.current_epoch
            self.run.log(epoch=trainer.current_epoch + 1, **self._metrics(trainer, with_validation=validated))

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
