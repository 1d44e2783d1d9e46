"""What a LightningModule logs must not end its fit: a metric named `step` or `epoch` (run.log's own arguments),
or a value the API refuses (an accuracy in percent), is left out of the record, the latter with a warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.sdk.conftest import TOKEN, LiveApi

pl = pytest.importorskip("lightning.pytorch", reason="lightning is not installed (pip install prunescope[lightning])")


class Logging(pl.LightningModule):  # type: ignore[misc, name-defined]
    """Logs its global step and epoch as metrics (`steps`), and its validation accuracy in percent (`percent`)."""

    def __init__(self, steps: bool, percent: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.steps, self.percent = steps, percent

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _index: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        if self.steps:
            self.log("step", float(self.global_step))
            self.log("epoch", float(self.current_epoch))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _index: int) -> None:
        x, y = batch
        acc = (self.net(x).argmax(1) == y).float().mean()
        self.log("val_acc", acc * 100 if self.percent else acc)
        self.log("val_f1", acc)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(api: LiveApi, tmp_path: Path, *, steps: bool, percent: bool) -> int:
    from prunescope.sdk.lightning import PrunescopeCallback

    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(torch.randn(64, 8), torch.randint(0, 3, (64,))), batch_size=16)
    callback = PrunescopeCallback(name="logs-step", api=api.url, token=TOKEN, dir=tmp_path, log_every_n_steps=2)
    trainer = pl.Trainer(max_epochs=2, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         num_sanity_val_steps=0)
    trainer.fit(Logging(steps, percent), loader, loader)
    assert callback.run is not None and callback.run.id is not None
    return callback.run.id


def test_a_module_logging_step_and_epoch_fits_and_is_recorded(api: LiveApi, tmp_path: Path) -> None:
    # Run.log() got multiple values for keyword argument 'step' (then 'epoch'): the fit failed.
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="prunescope")
        run_id = fit(api, tmp_path, steps=True, percent=False)
    with api.http() as http:
        assert http.get(f"/api/runs/{run_id}").json()["status"] == "completed"
        epochs = http.get(f"/api/runs/{run_id}/epochs").json()["items"]
        points = http.get(f"/api/tracked-runs/{run_id}/points").json()["items"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(e["test_acc"] is not None and e["train_loss"] is not None for e in epochs)
    assert points and all("step" not in p["values"] and "epoch" not in p["values"] for p in points)


def test_a_refused_metric_is_warned_and_left_out_while_the_fit_goes_on(api: LiveApi, tmp_path: Path) -> None:
    # val_acc in percent: ValidationError (test_acc must be ≤ 1) at the first epoch's end ended the fit, run failed.
    with pytest.warns(UserWarning, match=r"val_acc \(recorded as test_acc\) = [0-9.]+ is refused at epoch 1 .*"
                                         r"less than or equal to 1") as caught:
        run_id = fit(api, tmp_path, steps=False, percent=True)
    assert len([w for w in caught if "val_acc" in str(w.message)]) == 1  # once, not every epoch
    with api.http() as http:
        assert http.get(f"/api/runs/{run_id}").json()["status"] == "completed"
        epochs = http.get(f"/api/runs/{run_id}/epochs").json()["items"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(e["test_acc"] is None and e["train_loss"] is not None for e in epochs)
    assert all(e["extra"]["val_f1"] is not None for e in epochs)  # the epoch's other values are kept
