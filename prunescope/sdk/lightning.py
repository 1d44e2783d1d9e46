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

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.run is None:
            self.init_kwargs.setdefault("epochs", trainer.max_epochs if (trainer.max_epochs or 0) > 0 else None)
            self.run = init(**self.init_kwargs)
        if self.pruner is not None:
            self.run.watch(self.pruner)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.run is not None and self.log_every_n_steps and trainer.global_step % self.log_every_n_steps == 0:
            values = _scalars(trainer.callback_metrics, self.metric_names)
            self.run.log(step=trainer.global_step, epoch=trainer.current_epoch + 1, **values)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.run is not None:
            self.run.log(epoch=trainer.current_epoch + 1, **_scalars(trainer.callback_metrics, self.metric_names))

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.run is not None:
            self.run.finish("cancelled" if trainer.interrupted else "completed")

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self.run is not None:
            from prunescope.sdk.transport import RunCancelled

            if isinstance(exception, RunCancelled):
                self.run.finish("cancelled")
                return
            text = "".join(traceback.format_exception(exception)[-12:])
            self.run.finish("failed", error=f"{type(exception).__name__}: {exception}\n{text}")
