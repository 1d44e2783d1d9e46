"""Datasets: in-memory tensors (`DataBundle`) or lazily read datasets (`LoaderBundle`), and their batches.

Small and medium data sits in one (N, C, H, W) float32 tensor batched by index; data that should not
(an image folder, a plugin's on-disk set) comes as map-style datasets read through a DataLoader.
`train_batches` / `eval_batches` give the training loop (x, y) batches from either, augmented when asked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from prunescope import plugins
from worker.engine.datasets.augment import pad_crop_flip, random_shift
from worker.engine.datasets.cifar import CIFAR_MEAN, CIFAR_STD, LAYOUTS, load_cifar
from worker.engine.datasets.folder import image_folder
from worker.engine.datasets.idx import IDX_FILES, MNIST_MIRRORS, NORMALIZATION, mnist_like, read_idx
from worker.engine.networks import CIFAR_MODELS, CONV_MODELS

__all__ = ["CIFAR_MEAN", "CIFAR_STD", "IDX_FILES", "MNIST_MIRRORS", "NORMALIZATION", "DataBundle", "LoaderBundle",
           "eval_batches", "load_dataset", "read_idx", "synthetic_bundle", "train_batches"]

#: Datasets augmented unless `dataset.augment` is false (others only when it is true).
AUGMENTED_BY_DEFAULT = ("cifar10", "cifar100")
Augment = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


@dataclass
class DataBundle:
    """Train/test tensors and what the model needs to know about them."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    input_shape: tuple[int, int, int]
    num_classes: int
    augment: Augment | None = None  # applied to each training batch, never to evaluation

    @property
    def train_size(self) -> int:
        return len(self.train_y)

    def to(self, device: str | torch.device) -> DataBundle:
        """The same data on `device` (moved once, before the first epoch)."""
        return replace(self, train_x=self.train_x.to(device), train_y=self.train_y.to(device),
                       test_x=self.test_x.to(device), test_y=self.test_y.to(device))


@dataclass
class LoaderBundle:
    """Map-style datasets of (C×H×W float tensor, int label) items, batched by a DataLoader."""

    train: Dataset
    test: Dataset
    input_shape: tuple[int, int, int]
    num_classes: int
    augment: Augment | None = None
    num_workers: int = 0

    @property
    def train_size(self) -> int:
        return len(self.train)  # type: ignore[arg-type]

    def to(self, device: str | torch.device) -> LoaderBundle:
        return self  # batches move to the device one at a time


Data = DataBundle | LoaderBundle


def train_batches(data: Data, batch_size: int, generator: torch.Generator,
                  device: str | torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled (x, y) training batches on `device`, augmented if the data says so.

    For a DataBundle the order is `torch.randperm(n, generator=generator)`, batches of consecutive indices.
    """
    if isinstance(data, DataBundle):
        order = torch.randperm(data.train_size, generator=generator).to(data.train_x.device)
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = (
            (data.train_x[index], data.train_y[index]) for index in order.split(batch_size))
    else:
        batches = iter(DataLoader(data.train, batch_size=batch_size, shuffle=True, generator=generator,
                                  num_workers=data.num_workers, pin_memory=str(device).startswith("cuda")))
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        yield (data.augment(x, generator) if data.augment is not None else x), y


def eval_batches(data: Data, batch_size: int,
                 device: str | torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The test set in order, in batches of `batch_size`, on `device`; never augmented."""
    if isinstance(data, DataBundle):
        for start in range(0, len(data.test_y), batch_size):
            yield (data.test_x[start: start + batch_size].to(device),
                   data.test_y[start: start + batch_size].to(device))
        return
    for x, y in DataLoader(data.test, batch_size=batch_size, num_workers=data.num_workers):
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def load_dataset(dataset_cfg: dict, data_dir: Path, *, model_name: str) -> Data:
    """Load `dataset_cfg["name"]` shaped for `model_name`; `limit` keeps the first N training samples."""
    name = dataset_cfg.get("name", "digits")
    data_dir = Path(data_dir)
    bundle: Data
    if name == "digits":
        upsample = model_name in CONV_MODELS
        bundle = _memo(("digits", upsample), lambda: _digits(upsample=upsample))
    elif name in MNIST_MIRRORS:
        raw = data_dir / MNIST_MIRRORS[name][0] / "raw"
        bundle = _memo(_files_key(name, [raw / f for files in IDX_FILES.values() for f in files]),
                       lambda: checked_tensors(DataBundle(*mnist_like(name, data_dir), (1, 28, 28), 10), str(raw)))
    elif name in LAYOUTS:
        folder_name, train_files, test_file = LAYOUTS[name][:3]
        bundle = _memo(_files_key(name, [data_dir / folder_name / f for f in [*train_files, test_file]]),
                       lambda: _cifar_bundle(name, data_dir))
    elif name == "image_folder":
        if not dataset_cfg.get("path"):
            raise ValueError("dataset 'image_folder' needs path: a folder inside the data directory")
        train, test, shape, classes = image_folder(data_dir, str(dataset_cfg["path"]))
        bundle = LoaderBundle(train, test, shape, classes)
    elif name == "synthetic":
        shape = (3, 32, 32) if model_name == "small_cnn" or model_name in CIFAR_MODELS else (1, 28, 28)
        bundle = synthetic_bundle(shape)
    else:
        bundle = _plugin_dataset(name, data_dir, dataset_cfg.get("params") or {})
    augment = dataset_cfg.get("augment")
    if augment if augment is not None else name in AUGMENTED_BY_DEFAULT:
        # 1-channel images (MNIST, Fashion-MNIST, digits) are shifted ≤ 2 px, never mirrored; colour ones
        # get CIFAR's padded crop (4 px) + horizontal flip.
        bundle.augment = random_shift if bundle.input_shape[0] == 1 else pad_crop_flip
    limit = dataset_cfg.get("limit")
    if limit is not None:
        if isinstance(bundle, DataBundle):
            bundle.train_x, bundle.train_y = bundle.train_x[:limit], bundle.train_y[:limit]
        else:
            bundle.train = Subset(bundle.train, range(min(int(limit), bundle.train_size)))
    return bundle


# The last built-in in-memory dataset this process loaded, so a worker's next run on the same data (a sweep)
# does not read and decode its files again (MNIST: 0.37 s a run). One at a time: the memory it holds is one
# dataset's. Each caller gets a bundle of its own over the same tensors, which nothing writes to.
_LOADED: dict[tuple, DataBundle] = {}


def _memo(key: tuple | None, load: Callable[[], DataBundle]) -> DataBundle:
    if key is None:
        return load()
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load()
    return replace(_LOADED[key])


def _files_key(name: str, paths: list[Path]) -> tuple | None:
    """The dataset and each file's path, size and modification time; None while one is missing (the load
    downloads it or says what to do)."""
    try:
        return (name, *((str(path.resolve()), st.st_size, st.st_mtime_ns) for path in paths for st in [path.stat()]))
    except FileNotFoundError:
        return None


def _cifar_bundle(name: str, data_dir: Path) -> DataBundle:
    train_x, train_y, test_x, test_y, classes = load_cifar(name, data_dir)
    return DataBundle(train_x, train_y, test_x, test_y, (3, 32, 32), classes)


def _plugin_dataset(name: str, data_dir: Path, params: dict) -> Data:
    plugin = plugins.dataset_plugin(name)  # a registered name only: a request never imports anything
    if plugin is None:
        known = ["digits", "mnist", "fashion_mnist", *LAYOUTS, "image_folder", "synthetic",
                 *sorted(plugins.REGISTRY.datasets)]
        raise ValueError(f"unknown dataset {name!r}; this worker knows {', '.join(known)} (a plugin another "
                         "worker offers: every worker on a queue must load the same PRUNESCOPE_PLUGINS)")
    bundle = plugin.load(data_dir, **params)
    if not isinstance(bundle, DataBundle | LoaderBundle):
        raise TypeError(f"dataset plugin {name!r} ({plugin.source}) returned {type(bundle).__name__}; "
                        "return a worker.engine.datasets.DataBundle or LoaderBundle")
    if len(bundle.input_shape) != 3 or bundle.num_classes < 1 or bundle.train_size < 1:
        raise ValueError(f"dataset plugin {name!r} returned input_shape {bundle.input_shape}, "
                         f"{bundle.num_classes} classes and {bundle.train_size} training samples")
    return checked_tensors(bundle, f"dataset plugin {name!r}") if isinstance(bundle, DataBundle) else bundle


def checked_tensors(bundle: DataBundle, source: str) -> DataBundle:
    """`bundle` with float32 images and int64 labels, or a ValueError naming what is wrong with it (a plugin's
    tensors, MNIST-format files). A plugin's tensors had reached the model as they came: float64 images or float
    labels failed inside torch, and labels out of range, mismatched lengths, an empty test set or the wrong image
    shape trained wrong or failed an epoch in."""
    parts: dict[str, torch.Tensor] = {}
    for split in ("train", "test"):
        x, y = getattr(bundle, f"{split}_x"), getattr(bundle, f"{split}_y")
        if len(x) != len(y):
            raise ValueError(f"{source}: {len(x)} {split} images but {len(y)} labels")
        if split == "test" and len(y) == 0:
            raise ValueError(f"{source}: the test set is empty (accuracy would read 0 %)")
        if tuple(x.shape[1:]) != tuple(bundle.input_shape):
            raise ValueError(f"{source}: {split} images are {tuple(x.shape[1:])}, input_shape says "
                             f"{tuple(bundle.input_shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{source}: {split} images are {x.dtype}; give floats (e.g. uint8 pixels / 255)")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.dim() != 1:
            raise ValueError(f"{source}: {split} labels must be class indices (a 1-d integer tensor), not "
                             f"{y.dtype} of shape {tuple(y.shape)}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= bundle.num_classes):
            raise ValueError(f"{source}: {split} labels run from {int(y.min())} to {int(y.max())}; with "
                             f"{bundle.num_classes} classes they must be 0 to {bundle.num_classes - 1}")
        parts[f"{split}_x"], parts[f"{split}_y"] = x.float(), y.long()
    return replace(bundle, train_x=parts["train_x"], train_y=parts["train_y"], test_x=parts["test_x"],
                   test_y=parts["test_y"])


def synthetic_bundle(shape: tuple[int, int, int], *, n_train: int = 1024, n_test: int = 256,
                     num_classes: int = 10, seed: int = 1234) -> DataBundle:
    """Deterministic, learnable random data: a fixed prototype per class plus noise."""
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(num_classes, *shape, generator=gen)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, num_classes, (n,), generator=gen)
        x = prototypes[y] + 1.5 * torch.randn(n, *shape, generator=gen)
        return x, y

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return DataBundle(train_x, train_y, test_x, test_y, shape, num_classes)


def _digits(*, upsample: bool) -> DataBundle:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(digits.target.astype(np.int64))
    if upsample:
        # Conv models (5x5 kernels, two poolings) need ≥ 28x28: scale the 8x8 digits up like MNIST.
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    order = torch.from_numpy(np.random.RandomState(0).permutation(len(y)))  # fixed split, any seed
    x, y = x[order], y[order]
    n_test = len(y) // 5
    shape = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
    return DataBundle(x[n_test:], y[n_test:], x[:n_test], y[:n_test], shape, 10)


def steps_per_epoch(data: Data, batch_size: int) -> int:
    return math.ceil(data.train_size / batch_size)
