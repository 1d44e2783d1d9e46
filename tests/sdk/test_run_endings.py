"""How the plain SDK ends a run stopped on purpose (Ctrl-C), and what it says of a loss that is not finite."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import prunescope
from tests.sdk.conftest import TOKEN, LiveApi


def test_ctrl_c_inside_with_ends_the_run_cancelled_and_is_raised_again(api: LiveApi, tmp_path: Path) -> None:
    # It ended `failed` with a KeyboardInterrupt traceback, unlike Lightning's Ctrl-C (cancelled).
    with pytest.raises(KeyboardInterrupt), prunescope.init(name="ctrl-c", api=api.url, token=TOKEN,
                                                           dir=tmp_path) as run:
        run.log(epoch=1, train_loss=0.5)
        raise KeyboardInterrupt
    with api.http() as http:
        detail = http.get(f"/api/runs/{run.id}").json()
        epochs = http.get(f"/api/runs/{run.id}/epochs").json()["items"]
    assert detail["status"] == "cancelled" and not detail.get("error")
    assert [e["epoch"] for e in epochs] == [1]


def test_a_non_finite_loss_is_warned_once_naming_the_epoch_and_stored_as_null(api: LiveApi, tmp_path: Path) -> None:
    # Logged NaN every epoch, the run ended `completed` with train_loss [None, None, None] and nothing said.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with prunescope.init(name="nan-loss", api=api.url, token=TOKEN, dir=tmp_path) as run:
            run.log(epoch=1, train_loss=math.nan, test_acc=0.5)
            run.log(epoch=2, train_loss=np.float32("nan"), test_acc=0.5)
            run.log(epoch=3, train_loss=torch.tensor(float("inf")), test_acc=0.5)
            run.log(step=7, loss=float("-inf"))
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 2, messages  # once per name: train_loss at epoch 1, loss at step 7
    assert messages[0].startswith("run.log: train_loss is nan at epoch 1, not a finite number: it is stored as null")
    assert messages[1].startswith("run.log: loss is -inf at step 7")
    with api.http() as http:
        assert http.get(f"/api/runs/{run.id}").json()["status"] == "completed"  # the script's choice to go on
        epochs = http.get(f"/api/runs/{run.id}/epochs").json()["items"]
    assert [e["train_loss"] for e in epochs] == [None, None, None]


def test_finite_values_warn_nothing(api: LiveApi, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with prunescope.init(name="finite", api=api.url, token=TOKEN, dir=tmp_path) as run:
            run.log(epoch=1, train_loss=0.5, test_acc=None, note=np.float64(1e300))
            run.log(step=1, loss=0.25)


def test_epoch_and_step_must_be_whole_numbers(api: LiveApi, tmp_path: Path) -> None:
    # run.log(epoch=True) silently overwrote epoch 1, and epoch=2.0 epoch 2.
    with prunescope.init(name="whole", api=api.url, token=TOKEN, dir=tmp_path) as run:
        for bad in ({"epoch": True}, {"epoch": 2.0}, {"step": 1.5}, {"step": False}):
            with pytest.raises(TypeError, match=r"must be a whole number"):
                run.log(**bad, loss=1.0)
        run.log(epoch=np.int64(1), train_loss=0.5)
        run.log(step=3, loss=0.4)
    with api.http() as http:
        assert [e["epoch"] for e in http.get(f"/api/runs/{run.id}/epochs").json()["items"]] == [1]
