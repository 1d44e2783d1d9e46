"""Dataset loading: IDX files, the restricted CIFAR unpickler, digits for every model, limits."""

from __future__ import annotations

import gzip
import pickle
import struct
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from worker.engine import datasets
from worker.engine.datasets import DataBundle, load_dataset, read_idx
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


def test_a_process_reads_a_dataset_once_until_its_files_change(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_mnist(tmp_path)
    reads: list[Path] = []
    real_read = datasets.mnist_like

    def counting(name: str, data_dir: Path) -> tuple:
        reads.append(data_dir)
        return real_read(name, data_dir)

    monkeypatch.setattr(datasets, "mnist_like", counting)
    first = load_dataset({"name": "mnist", "limit": 4, "augment": True}, tmp_path, model_name="lenet300_100")
    second = load_dataset({"name": "mnist"}, tmp_path, model_name="lenet300_100")
    assert len(reads) == 1  # the second run of a sweep reuses the decoded tensors
    # ... each with its own limit and augmentation: one run's settings never leak into the next
    assert first.train_size == 4 and first.augment is not None
    assert second.train_size == 12 and second.augment is None and second.test_x.shape == (5, 1, 28, 28)
    assert torch.equal(first.train_x, second.train_x[:4])

    _fake_mnist(tmp_path, n_train=20)  # new files (another size): read again
    assert load_dataset({"name": "mnist"}, tmp_path, model_name="lenet300_100").train_size == 20
    assert len(reads) == 2
    other = tmp_path / "other"
    _fake_mnist(other)
    load_dataset({"name": "mnist"}, other, model_name="lenet300_100")
    assert len(reads) == 3 and len(datasets._LOADED) == 1  # one dataset held at a time


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


def test_cifar100_loads_its_python_archive_with_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 6), ("test", 3)):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": [99, 0, 50, 1, 2, 3][:n],
                 b"coarse_labels": [0] * n}
        (folder / name).write_bytes(pickle.dumps(batch))
    bundle = load_dataset({"name": "cifar100"}, tmp_path, model_name="resnet20")
    assert bundle.num_classes == 100 and bundle.train_x.shape == (6, 3, 32, 32)
    assert bundle.train_y.tolist() == [99, 0, 50, 1, 2, 3] and bundle.augment is not None  # augmented by default


def test_missing_cifar100_says_which_archive_to_extract(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python\.tar\.gz"):
        load_dataset({"name": "cifar100"}, tmp_path, model_name="resnet20")


def test_pad_crop_flip_shifts_and_mirrors_each_image() -> None:
    from worker.engine.datasets.augment import pad_crop_flip

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) + 1
    out = pad_crop_flip(x, torch.Generator().manual_seed(0), padding=0)  # no room to shift: only flips
    for image, source in zip(out, x, strict=True):
        assert torch.equal(image, source) or torch.equal(image, source.flip(2))
    shifted = pad_crop_flip(x, torch.Generator().manual_seed(3))
    assert shifted.shape == x.shape and not torch.equal(shifted, x)
    assert torch.equal(shifted, pad_crop_flip(x, torch.Generator().manual_seed(3)))  # seeded: reproducible
    # Every output pixel is a pixel of the (zero-padded) source image, so the multiset shrinks or stays.
    assert set(shifted[0].unique().tolist()) <= set(x[0].unique().tolist()) | {0.0}


def test_augment_is_off_unless_asked_for_non_cifar_data(tmp_path: Path) -> None:
    assert load_dataset({"name": "digits"}, tmp_path, model_name="mlp").augment is None
    assert load_dataset({"name": "digits", "augment": True}, tmp_path, model_name="mlp").augment is not None


def _shift_of(image: torch.Tensor, source: torch.Tensor, bound: int) -> tuple[int, int] | None:
    """The (dy, dx) with |dy|, |dx| ≤ bound that turns `source` into `image` (edge pixels repeated), if any."""
    padded = torch.nn.functional.pad(source[None], (bound, bound, bound, bound), mode="replicate")[0]
    height, width = source.shape[-2:]
    for dy in range(-bound, bound + 1):
        for dx in range(-bound, bound + 1):
            window = padded[..., bound + dy: bound + dy + height, bound + dx: bound + dx + width]
            if torch.equal(window, image):
                return dy, dx
    return None


def test_random_shift_moves_each_image_at_most_2px_and_never_mirrors_it() -> None:
    from worker.engine.datasets.augment import random_shift

    # Distinct positive pixels, so a mirrored image can never pass for a shifted one.
    x = torch.arange(64 * 1 * 28 * 28, dtype=torch.float32).reshape(64, 1, 28, 28) + 1
    out = random_shift(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    shifts = [_shift_of(image, source, bound=2) for image, source in zip(out, x, strict=True)]
    assert None not in shifts  # each output is its source moved ≤ 2 px per axis: no flip, no larger shift
    assert len(set(shifts)) > 5 and any(shift != (0, 0) for shift in shifts)  # and the shifts vary
    far = [i for i, shift in enumerate(shifts) if shift is not None and 2 in (abs(shift[0]), abs(shift[1]))]
    assert far and all(_shift_of(out[i], x[i], bound=1) is None for i in far)  # ±2 px really is 2 px away
    assert all(_shift_of(image, source.flip(-1), bound=2) is None for image, source in zip(out, x, strict=True))


def test_random_shift_is_reproducible_from_its_seed() -> None:
    from worker.engine.datasets.augment import random_shift

    x = torch.randn(16, 1, 28, 28)
    first = random_shift(x, torch.Generator().manual_seed(7))
    assert torch.equal(first, random_shift(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, random_shift(x, torch.Generator().manual_seed(8)))


def test_augment_shifts_mnist_like_data_without_flipping_and_keeps_cifars_crop_and_flip(tmp_path: Path) -> None:
    from worker.engine.datasets.augment import pad_crop_flip, random_shift

    for name, folder in (("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")):
        _fake_mnist(tmp_path, folder)
        assert load_dataset({"name": name}, tmp_path, model_name="mlp").augment is None  # default stays off
        assert load_dataset({"name": name, "augment": True}, tmp_path, model_name="mlp").augment is random_shift
    assert load_dataset({"name": "digits", "augment": True}, tmp_path, model_name="mlp").augment is random_shift
    assert load_dataset({"name": "synthetic", "augment": True}, tmp_path,
                        model_name="small_cnn").augment is pad_crop_flip  # 3 channels: CIFAR's crop + flip
    assert load_dataset({"name": "synthetic", "augment": False}, tmp_path, model_name="small_cnn").augment is None


def _image_folder(root: Path, size: tuple[int, int] = (10, 12)) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_image_folder_reads_lazily_through_a_dataloader(tmp_path: Path) -> None:
    _image_folder(tmp_path / "pets")
    bundle = load_dataset({"name": "image_folder", "path": "pets", "limit": 5}, tmp_path, model_name="resnet20")
    assert isinstance(bundle, datasets.LoaderBundle)
    assert bundle.input_shape == (3, 12, 10) and bundle.num_classes == 2 and bundle.train_size == 5
    batches = list(datasets.train_batches(bundle, 2, torch.Generator().manual_seed(0), "cpu"))
    assert [len(y) for _, y in batches] == [2, 2, 1] and batches[0][0].shape == (2, 3, 12, 10)
    test = list(datasets.eval_batches(bundle, 3, "cpu"))
    assert sum(len(y) for _, y in test) == 4 and sorted(torch.cat([y for _, y in test]).tolist()) == [0, 0, 1, 1]
    net = build_model({"name": "resnet20", "width_multiplier": 0.25}, bundle.input_shape, bundle.num_classes)
    assert net(batches[0][0]).shape == (2, 2)


def test_image_folder_paths_cannot_leave_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _image_folder(tmp_path / "outside")
    (data / "link").symlink_to(tmp_path / "outside")
    for path in ("../outside", "/etc", "link"):
        with pytest.raises(ValueError, match="data directory"):
            load_dataset({"name": "image_folder", "path": path}, data, model_name="mlp")


@pytest.mark.parametrize("link", ["train", "test", "train/cat", "train/cat/0.png"])
def test_a_symlink_out_of_the_data_dir_is_refused_wherever_it_sits(tmp_path: Path, link: str) -> None:
    # Only the dataset's root was checked: train/, test/, a class folder or an image linked out of the data dir
    # were read.
    data = tmp_path / "data"
    _image_folder(data / "pets")
    _image_folder(tmp_path / "outside")
    target = data / "pets" / link
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink()
    target.symlink_to(tmp_path / "outside" / link)
    with pytest.raises(ValueError, match="leads outside the data directory"):
        load_dataset({"name": "image_folder", "path": "pets"}, data, model_name="mlp")


def test_image_folder_finds_nested_images_skips_hidden_folders_refuses_empty_classes_and_reads_16_bit(
        tmp_path: Path) -> None:
    from PIL import Image

    _image_folder(tmp_path / "pets")
    nested = tmp_path / "pets" / "train" / "cat" / "deeper"
    nested.mkdir()
    Image.fromarray(np.zeros((12, 10, 3), dtype=np.uint8)).save(nested / "n.png")
    (tmp_path / "pets" / "train" / ".cache").mkdir()  # not a class
    bundle = load_dataset({"name": "image_folder", "path": "pets"}, tmp_path, model_name="mlp")
    assert bundle.num_classes == 2 and bundle.train_size == 7  # 3 + 3 + the nested one
    (tmp_path / "pets" / "train" / "zzz").mkdir()
    with pytest.raises(ValueError, match=r"class folders \['zzz'\] hold no image"):
        load_dataset({"name": "image_folder", "path": "pets"}, tmp_path, model_name="mlp")
    from worker.engine.datasets.folder import _open_rgb

    gray16 = tmp_path / "g16.png"
    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(gray16)  # mid-grey in 16 bits
    assert int(_open_rgb(gray16, None)[0, 0, 0]) in (127, 128)  # convert("RGB") made it 255


def test_tensor_batches_cover_the_epoch_once_in_seeded_order(tmp_path: Path) -> None:
    bundle = datasets.synthetic_bundle((1, 4, 4), n_train=10, n_test=3)
    ys = [y for _, y in datasets.train_batches(bundle, 4, torch.Generator().manual_seed(5), "cpu")]
    assert [len(y) for y in ys] == [4, 4, 2]
    order = torch.randperm(10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.cat(ys), bundle.train_y[order])


def test_pad_crop_flip_for_colour_images_is_cifars_crop_and_flip_as_before() -> None:
    from worker.engine.datasets.augment import pad_crop_flip

    x = torch.randn(8, 3, 32, 32)
    out = pad_crop_flip(x, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)  # the same draws, in the same order: offsets, then flips
    offsets = torch.randint(0, 9, (2, 8), generator=generator)
    flips = torch.rand(8, generator=generator) < 0.5
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))  # zero fill
    for i in range(8):
        crop = padded[i, :, offsets[0, i]: offsets[0, i] + 32, offsets[1, i]: offsets[1, i] + 32]
        assert torch.equal(out[i], crop.flip(-1) if flips[i] else crop)


def test_mnist_training_batches_are_shifted_only_when_augment_is_on(tmp_path: Path) -> None:
    from worker.engine.datasets import train_batches

    _fake_mnist(tmp_path)
    for augment, changed in ((None, False), (True, True)):
        data = load_dataset({"name": "mnist", "augment": augment}, tmp_path, model_name="lenet300_100")
        x, _ = next(train_batches(data, 12, torch.Generator().manual_seed(0), "cpu"))
        order = torch.randperm(12, generator=torch.Generator().manual_seed(0))
        assert isinstance(data, DataBundle) and x.shape == (12, 1, 28, 28)
        assert torch.equal(x, data.train_x[order]) is not changed


def _bundle(**change: Any) -> DataBundle:
    from dataclasses import replace

    base = DataBundle(torch.randn(8, 1, 4, 4), torch.arange(8) % 3, torch.randn(4, 1, 4, 4), torch.arange(4) % 3,
                      (1, 4, 4), 3)
    return replace(base, **change)


@pytest.mark.parametrize(("change", "why"), [
    ({"train_y": torch.arange(6) % 3}, "8 train images but 6 labels"),
    ({"test_x": torch.randn(0, 1, 4, 4), "test_y": torch.zeros(0, dtype=torch.long)}, "the test set is empty"),
    ({"input_shape": (1, 5, 5)}, r"train images are \(1, 4, 4\), input_shape says \(1, 5, 5\)"),
    ({"train_x": torch.zeros(8, 1, 4, 4, dtype=torch.uint8)}, "train images are torch.uint8; give floats"),
    ({"train_y": (torch.arange(8) % 3).float()}, "train labels must be class indices"),
    ({"test_y": torch.tensor([0, 1, 2, 9])}, "test labels run from 0 to 9; with 3 classes they must be 0 to 2"),
    ({"train_y": torch.tensor([0, 1, 2, -1, 0, 1, 2, 0])}, "train labels run from -1"),
])
def test_a_plugins_tensors_are_checked_before_training(change: dict, why: str) -> None:
    # They reached the model as they came: raw torch errors an epoch in, or silent training on wrong data.
    from worker.engine.datasets import checked_tensors

    with pytest.raises(ValueError, match=why):
        checked_tensors(_bundle(**change), "dataset plugin 'd'")


def test_a_plugins_float64_images_and_int32_labels_are_converted() -> None:
    from worker.engine.datasets import checked_tensors

    bundle = checked_tensors(_bundle(train_x=torch.randn(8, 1, 4, 4, dtype=torch.float64),
                                     train_y=(torch.arange(8) % 3).int()), "dataset plugin 'd'")
    assert bundle.train_x.dtype == torch.float32 and bundle.train_y.dtype == torch.int64


@pytest.mark.parametrize(("damage", "why"), [
    ("labels", "120 train images but"),
    ("size", r"train images are \(1, 32, 32\), input_shape says \(1, 28, 28\)"),
    ("label12", "train labels run from 0 to 12; with 10 classes they must be 0 to 9"),
    ("truncated", "is damaged"),
])
def test_idx_files_that_do_not_fit_are_refused_by_name(tmp_path: Path, damage: str, why: str) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    size = 32 if damage == "size" else 28
    _write_idx(raw / "train-images-idx3-ubyte.gz", np.zeros((120, size, size), dtype=np.uint8))
    labels = np.arange(100 if damage == "labels" else 120) % 10
    if damage == "label12":
        labels[3] = 12
    _write_idx(raw / "train-labels-idx1-ubyte.gz", labels)
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", np.zeros((20, 28, 28), dtype=np.uint8))
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(20) % 10)
    if damage == "truncated":
        path = raw / "t10k-images-idx3-ubyte.gz"
        path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ValueError, match=why):
        load_dataset({"name": "fashion_mnist"}, tmp_path, model_name="mlp")
