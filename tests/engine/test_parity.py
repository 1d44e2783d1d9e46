"""The engine computes what a plain PyTorch pruning loop computes, at the schedule's documented semantics.

`bench/plain_loop.py` (no prunescope imports) defines `start_epoch`, `end_epoch` and `every_steps` the way README
and /docs do: epochs count from 1, the first update is at the end of epoch `start_epoch` (0: before the first
step), the target is reached at the end of `end_epoch`, updates every `every_steps` optimizer steps between. These
cases sit on the edges of that definition (a one-shot cut before training, one at an epoch's end, a partial last
batch, one step an epoch, updates every step) and must give the same sparsity and the same test accuracy at
every epoch on both sides. A schedule one step off, a momentum buffer not masked, or a last batch handled
differently changes them.
"""

from __future__ import annotations

import gzip
import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _bench_module():
    spec = importlib.util.spec_from_file_location("engine_parity", ROOT / "bench" / "engine_parity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("engine_parity", module)
    spec.loader.exec_module(module)
    return module


parity = _bench_module()


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small learnable MNIST in torchvision's layout: noisy copies of ten class prototypes."""
    root = tmp_path_factory.mktemp("parity")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    prototypes = rng.integers(0, 256, (10, 28, 28))
    for split, count in (("train", 300), ("t10k", 120)):
        labels = rng.integers(0, 10, count)
        images = np.clip(prototypes[labels] * 0.8 + rng.integers(0, 64, (count, 28, 28)), 0, 255)
        _write_idx(raw / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


CASES = {
    # one-shot cut before the first step; 300 samples in batches of 64 leave a partial last batch
    "before-training": parity.Hyper(epochs=2, batch_size=64, lr=0.05, target=0.9, start_epoch=0, end_epoch=0,
                                    every_steps=2),
    # a ramp over epochs 1-3 updated every 3 steps, with momentum and weight decay on masked weights
    "ramp": parity.Hyper(epochs=4, batch_size=32, lr=0.05, weight_decay=5e-4, target=0.98, start_epoch=1,
                         end_epoch=3, every_steps=3),
    # one step an epoch (the batch is larger than the data), one-shot cut at the end of epoch 3
    "one-step-epochs": parity.Hyper(epochs=8, batch_size=500, lr=0.1, target=0.8, start_epoch=3, end_epoch=3,
                                    every_steps=7),
    # updates every step from before the first, no momentum
    "every-step": parity.Hyper(epochs=2, batch_size=50, lr=0.1, momentum=0.0, weight_decay=0.0, target=0.5,
                               start_epoch=0, end_epoch=2, every_steps=1),
}


@pytest.mark.parametrize("case", CASES)
def test_the_engine_matches_the_plain_loop_epoch_by_epoch(case: str, mnist_dir: Path) -> None:
    hyper = CASES[case]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the plain loop runs on one thread: the same arithmetic
    try:
        engine = parity.run_engine(mnist_dir, 3, hyper)
    finally:
        torch.set_num_threads(threads)
    plain = parity.run_plain(mnist_dir, 3, hyper)
    assert len(engine) == len(plain) == hyper.epochs
    for ours, theirs in zip(engine, plain, strict=True):
        assert ours["sparsity"] == pytest.approx(theirs["sparsity"], abs=1e-9), (case, ours["epoch"])
        assert ours["test_acc"] == pytest.approx(theirs["test_acc"], abs=1e-9), (case, ours["epoch"])
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4), (case, ours["epoch"])
    assert engine[-1]["sparsity"] == pytest.approx(hyper.target, abs=0.01)
    assert engine[-1]["test_acc"] > 0.2, "the data is learnable: a run at chance would prove little"


def test_every_hyperparameter_reaches_the_plain_loop_as_a_flag() -> None:
    flags = parity.Hyper(every_steps=7, start_epoch=2).plain_flags()
    assert flags[flags.index("--every-steps") + 1] == "7"
    assert flags[flags.index("--start-epoch") + 1] == "2"
    assert len(flags) == 2 * len(parity.fields(parity.Hyper))
