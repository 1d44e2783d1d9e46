"""The prunable layer names of the built-in models, without torch, and the glob selection the pruner applies.

The API checks `pruning.layers` against these before a run is queued; an engine test builds every
built-in model and compares its Linear/Conv weight names (in order) with what this module says.
"""

from __future__ import annotations

import fnmatch
from typing import Any

DEFAULT_MLP_HIDDEN = (256, 256)
RESNET_DEPTHS = {"resnet20": 20, "resnet32": 32, "resnet56": 56}
VGG16_CONVS = 13
WRN_DEPTH, WRN_WIDEN = 22, 2


def resnet_blocks(depth: int) -> int:
    """Basic blocks per stage of a CIFAR ResNet (He et al. 2016: depth = 6n + 2)."""
    return (depth - 2) // 6


def wrn_blocks(depth: int) -> int:
    """Basic blocks per group of a Wide ResNet (Zagoruyko & Komodakis 2016: depth = 6n + 4)."""
    return (depth - 4) // 6


def builtin_layer_names(model: dict[str, Any]) -> list[str] | None:
    """Weight names of every Linear/Conv layer of a built-in model, in module order; None for other names."""
    name = model.get("name", "lenet300_100")
    if name == "lenet300_100":
        return _fc(3)
    if name == "mlp":
        hidden = model.get("hidden")
        return _fc(len(DEFAULT_MLP_HIDDEN if hidden is None else hidden) + 1)
    if name == "lenet5":
        return ["conv1.weight", "conv2.weight", *_fc(2)]
    if name == "small_cnn":
        return ["conv1.weight", "conv2.weight", "conv3.weight", *_fc(2)]
    if name in RESNET_DEPTHS:
        blocks = resnet_blocks(RESNET_DEPTHS[name])
        return ["conv1.weight",
                *[f"layer{stage}.{block}.{conv}.weight" for stage in (1, 2, 3) for block in range(blocks)
                  for conv in ("conv1", "conv2")],
                "fc.weight"]
    if name == "vgg16_bn":
        return [*[f"conv{i}.weight" for i in range(1, VGG16_CONVS + 1)], "fc.weight"]
    if name == "wrn22_2":
        names = ["conv1.weight"]
        for group in (1, 2, 3):
            for block in range(wrn_blocks(WRN_DEPTH)):
                names += [f"layer{group}.{block}.conv1.weight", f"layer{group}.{block}.conv2.weight"]
                if block == 0:  # the width (and, in groups 2-3, the stride) changes: a 1x1 projection
                    names.append(f"layer{group}.{block}.shortcut.weight")
        return [*names, "fc.weight"]
    return None


def _fc(count: int) -> list[str]:
    return [f"fc{i}.weight" for i in range(1, count + 1)]


def selected(name: str, include: list[str] | None, exclude: list[str] | None) -> bool:
    """Whether `pruning.layers` selects `name`: it matches an include glob (default `*`) and no exclude glob
    (case-sensitive). The API's check and the engine's pruner both decide with this."""
    return (any(fnmatch.fnmatchcase(name, g) for g in (include if include is not None else ["*"]))
            and not any(fnmatch.fnmatchcase(name, g) for g in exclude or []))


def select_layers(names: list[str], include: list[str] | None, exclude: list[str] | None) -> list[str]:
    """The names `pruning.layers` selects, in order."""
    return [n for n in names if selected(n, include, exclude)]
