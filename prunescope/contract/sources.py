"""What a run trains on: the built-in model and dataset names, plugin names and parameters, data-dir paths."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

# The built-in models and datasets; a run may also name a plugin that an online worker offers.
ModelName = Literal["lenet300_100", "lenet5", "mlp", "small_cnn", "resnet20", "resnet32", "resnet56",
                    "vgg16_bn", "wrn22_2"]
DatasetName = Literal["digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder", "synthetic"]
#: Models whose channel widths `model.width_multiplier` scales.
WIDTH_MODELS = ("resnet20", "resnet32", "resnet56", "vgg16_bn", "wrn22_2")
PLUGIN_NAME = r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$"
#: JSON scalars a plugin's build()/load() receives as keyword arguments.
PluginParam = str | int | float | bool | None
PluginParams = dict[Annotated[str, Field(max_length=64, pattern=PLUGIN_NAME)], PluginParam] | None
#: What a worker passes a plugin's build()/load() itself, before `model.params`/`dataset.params`: a parameter named
#: so collides ("got multiple values for argument"), whether or not the plugin takes **kwargs.
PLUGIN_ARGUMENTS = {"model": ("input_shape", "num_classes"), "dataset": ("data_dir",)}


def data_dir_relative(path: str) -> bool:
    """True when `path` names something inside a directory: relative, no `..`, no drive, no home."""
    parts = path.replace("\\", "/").split("/")
    return not (path.startswith(("/", "~", "\\")) or ":" in path or any(part == ".." for part in parts))
