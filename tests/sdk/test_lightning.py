"""The PyTorch Lightning callback (optional extra `prunescope[lightning]`) tracks a Trainer.fit with its pruner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import prunescope
from tests.sdk.conftest import TOKEN, LiveApi

pl = pytest.importorskip("lightning.pytorch", reason="lightning is not installed (pip install prunescope[lightning])")


class Classifier(pl.LightningModule):  # type: ignore[misc, name-defined]
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.optimizer = torch.optim.SGD(self.parameters(), lr=0.1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _index: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _index: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer


def test_lightning_callback_tracks_epochs_masks_and_finishes(api: LiveApi, tmp_path: Path) -> None:
    from prunescope.sdk.lightning import PrunescopeCallback

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 8), torch.randint(0, 3, (64,)))
    loader = DataLoader(data, batch_size=16)
    module = Classifier()
    pruner = prunescope.Pruner(module.net, module.optimizer, {"target_sparsity": 0.5, "schedule": {"kind": "constant"}},
                               epochs=2, steps_per_epoch=len(loader))
    callback = PrunescopeCallback(pruner=pruner, name="lightning", api=api.url, token=TOKEN, dir=tmp_path,
                                  log_every_n_steps=2)
    trainer = pl.Trainer(max_epochs=2, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, loader, loader)
    assert callback.run is not None and callback.run.id is not None
    with api.http() as http:
        detail = http.get(f"/api/runs/{callback.run.id}").json()
        epochs = http.get(f"/api/runs/{callback.run.id}/epochs").json()["items"]
        points = http.get(f"/api/tracked-runs/{callback.run.id}/points").json()["items"]
    assert detail["status"] == "completed" and detail["epochs_total"] == 2
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[1]["test_acc"] is not None and epochs[1]["train_loss"] is not None
    assert epochs[1]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert points and all(p["step"] % 2 == 0 for p in points)


def test_epochs_without_validation_carry_no_earlier_validation_and_a_second_fit_is_a_new_run(
        api: LiveApi, tmp_path: Path) -> None:
    # check_val_every_n_epoch=2: epoch 3 was stored with epoch 2's val_loss/val_acc (callback_metrics keeps them);
    # a second fit with the same callback raised "this run has finished".
    from prunescope.sdk.lightning import PrunescopeCallback

    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(torch.randn(64, 8), torch.randint(0, 3, (64,))), batch_size=16)
    callback = PrunescopeCallback(name="every-2", api=api.url, token=TOKEN, dir=tmp_path, log_every_n_steps=2)

    def fit(epochs: int) -> int:
        trainer = pl.Trainer(max_epochs=epochs, callbacks=[callback], logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                             check_val_every_n_epoch=2, num_sanity_val_steps=0)
        trainer.fit(Classifier(), loader, loader)
        assert callback.run is not None and callback.run.id is not None
        return callback.run.id

    first = fit(4)
    second = fit(2)
    assert second != first
    with api.http() as http:
        epochs = http.get(f"/api/runs/{first}/epochs").json()["items"]
        points = http.get(f"/api/tracked-runs/{first}/points").json()["items"]
        assert http.get(f"/api/runs/{second}").json()["status"] == "completed"
    assert [e["test_acc"] is not None for e in epochs] == [False, True, False, True]
    assert [e["test_loss"] is not None for e in epochs] == [False, True, False, True]
    assert all("val_acc" not in p["values"] and "test_acc" not in p["values"] for p in points)


def test_ctrl_c_in_a_lightning_fit_ends_the_run_cancelled(api: LiveApi, tmp_path: Path) -> None:
    from prunescope.sdk.lightning import PrunescopeCallback

    class Interrupted(Classifier):
        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
            if self.current_epoch == 1:
                raise KeyboardInterrupt
            return super().training_step(batch, index)

    loader = DataLoader(TensorDataset(torch.randn(32, 8), torch.randint(0, 3, (32,))), batch_size=16)
    callback = PrunescopeCallback(name="ctrl-c", api=api.url, token=TOKEN, dir=tmp_path)
    trainer = pl.Trainer(max_epochs=3, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    with pytest.raises(SystemExit):  # Lightning stops the fit, then exits
        trainer.fit(Interrupted(), loader)
    assert callback.run is not None
    with api.http() as http:
        assert http.get(f"/api/runs/{callback.run.id}").json()["status"] == "cancelled"
