"""Dataset loading: IDX files, the restricted CIFAR unpickler, digits for every model, limits."""

from __future__ import annotations

import gzip
import pickle
import struct
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.engine import datasets
from worker.engine.datasets import load_dataset, read_idx
from worker.engine.networks import build_model


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root: Path, folder: str = "MNIST", n_train: int = 12, n_test: int = 5) -> np.ndarray:
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    raw = root / folder / "raw"
    _write_idx(raw / "train-images-idx3-ubyte.gz", train_images)
    _write_idx(raw / "train-labels-idx1-ubyte.gz", np.arange(n_train) % 10)
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8))
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10)
    return train_images


def test_read_idx_returns_the_array_the_file_holds(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", array)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), array)


def test_read_idx_rejects_truncated_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"abc")
    with pytest.raises(ValueError, match="header says"):
        read_idx(path)


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_like_datasets_load_from_torchvision_layout(tmp_path: Path, name: str, folder: str) -> None:
    images = _fake_mnist(tmp_path, folder)
    bundle = load_dataset({"name": name, "limit": 7}, tmp_path, model_name="lenet300_100")
    assert bundle.input_shape == (1, 28, 28) and bundle.num_classes == 10
    assert bundle.train_x.shape == (7, 1, 28, 28) and bundle.test_x.shape == (5, 1, 28, 28)
    assert bundle.train_y.tolist() == list(range(7))
    mean, std = datasets.NORMALIZATION[name]
    assert torch.allclose(bundle.train_x[0, 0] * std + mean, torch.from_numpy(images[0] / 255.0).float(), atol=1e-5)


def test_missing_mnist_without_network_says_where_to_put_the_files(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match=r"MNIST/raw"):
        load_dataset({"name": "mnist"}, tmp_path, model_name="lenet300_100")


def _cifar_batch(n: int) -> dict:
    rng = np.random.default_rng(0)
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}


def test_cifar10_loads_pickle_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(_cifar_batch(4)))
    bundle = load_dataset({"name": "cifar10"}, tmp_path, model_name="small_cnn")
    assert bundle.train_x.shape == (20, 3, 32, 32) and bundle.test_x.shape == (4, 3, 32, 32)


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("pwned",))


def test_cifar10_loader_refuses_pickles_with_arbitrary_objects(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}))
    with pytest.raises(ValueError, match="not allowed"):
        load_dataset({"name": "cifar10"}, tmp_path, model_name="small_cnn")


@pytest.mark.parametrize("model", ["lenet300_100", "lenet5", "mlp", "small_cnn"])
@pytest.mark.parametrize("dataset", ["digits", "synthetic"])
def test_every_model_runs_on_every_offline_dataset(tmp_path: Path, model: str, dataset: str) -> None:
    bundle = load_dataset({"name": dataset, "limit": 8}, tmp_path, model_name=model)
    net = build_model({"name": model}, bundle.input_shape, bundle.num_classes)
    assert net(bundle.train_x).shape == (8, 10)
    if dataset == "digits":
        assert bundle.input_shape == ((1, 28, 28) if model in ("lenet5", "small_cnn") else (1, 8, 8))
        assert len(bundle.train_y) + len(bundle.test_y) <= 1797


@pytest.mark.parametrize("model", ["lenet300_100", "lenet5", "mlp", "small_cnn"])
def test_every_model_runs_on_mnist_and_cifar_shapes(model: str) -> None:
    for shape in ((1, 28, 28), (3, 32, 32)):
        assert build_model({"name": model}, shape, 10)(torch.zeros(2, *shape)).shape == (2, 10)


def test_lenet5_has_caffe_widths() -> None:
    net = build_model({"name": "lenet5"}, (1, 28, 28), 10)
    weights = sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d))
    assert weights == 430_500


def test_digits_split_is_deterministic(tmp_path: Path) -> None:
    a = load_dataset({"name": "digits"}, tmp_path, model_name="mlp")
    b = load_dataset({"name": "digits"}, tmp_path, model_name="mlp")
    assert torch.equal(a.test_y, b.test_y) and len(a.test_y) == 359
