"""The pruned-model artifact (`model.pt`): masked state_dict + masks, and the forms it converts into
(torch.nn.utils.prune form, a shrunk Sequential, a shrunk TorchScript module that loads without prunescope)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from worker.engine.networks import build_model

ARTIFACT_FORMAT = "prunescope.pruned-model/1"


def export_model(model: nn.Module, masks: dict[str, torch.Tensor], path: Path, *, config: dict,
                 input_shape: tuple[int, int, int], num_classes: int) -> Path:
    """Save the model with masks applied (plain tensors: loads with `torch.load(weights_only=True)`)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for name, mask in masks.items():
        state[name] = state[name] * mask.cpu()
    artifact = {"format": ARTIFACT_FORMAT, "config": config, "input_shape": list(input_shape),
                "num_classes": num_classes, "state_dict": state,
                "masks": {name: mask.detach().cpu().bool() for name, mask in masks.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(artifact, tmp)
    tmp.replace(path)
    return path


def load_exported(path: Path) -> tuple[nn.Module, dict[str, torch.Tensor], dict[str, Any]]:
    """Rebuild the pruned model from an artifact; returns (model, masks, the artifact dict)."""
    artifact = torch.load(path, map_location="cpu", weights_only=True)
    if artifact.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{path} is not a prunescope pruned-model artifact")
    model = build_model(artifact["config"].get("model") or {}, tuple(artifact["input_shape"]),
                        int(artifact["num_classes"]))
    model.load_state_dict(artifact["state_dict"])
    return model, artifact["masks"], artifact


def to_torch_prune(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Re-express the masks in `torch.nn.utils.prune` form (`weight_orig` + `weight_mask`), in place."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        module_name, _, param_name = name.rpartition(".")
        prune.custom_from_mask(modules[module_name], param_name, mask.to(torch.float32))
    return model


def _alive_rows(module: nn.Module) -> torch.Tensor:
    """Output units that can be removed without changing anything: all-zero weight row and zero bias."""
    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    alive = weight.detach().reshape(weight.shape[0], -1).ne(0).any(dim=1)
    bias = module.bias
    if isinstance(bias, torch.Tensor):
        alive |= bias.detach().ne(0)
    return alive


def shrink_model(model: nn.Module) -> nn.Sequential:
    """A physically smaller copy of a (neuron-)pruned Sequential: dead neurons/filters removed.

    A unit is dead when its weight row and bias are zero (a disabled neuron emits exactly 0 through
    ReLU/pooling), so removing it, and the next layer's inputs it fed, leaves the outputs unchanged.
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError("shrink_model needs an nn.Sequential model (every prunescope model is one)")
    small = copy.deepcopy(model)
    names = [n for n, m in small.named_children() if isinstance(m, nn.Linear | nn.Conv2d)]
    kept_in: torch.Tensor | None = None  # the previous layer's surviving output units
    previous: nn.Module | None = None
    for position, name in enumerate(names):
        module = getattr(small, name)
        is_last = position == len(names) - 1
        rows = torch.ones(module.weight.shape[0], dtype=torch.bool) if is_last else _alive_rows(module)
        if not bool(rows.any()):
            rows[0] = True  # keep one (dead) unit so the layer still exists
        weight = module.weight.detach()
        if kept_in is not None:
            if isinstance(module, nn.Linear) and isinstance(previous, nn.Conv2d):
                spatial = module.in_features // previous.out_channels
                columns = kept_in.repeat_interleave(spatial)
            else:
                columns = kept_in
            weight = weight[:, columns]
        weight = weight[rows]
        bias = module.bias.detach()[rows] if module.bias is not None else None
        if isinstance(module, nn.Linear):
            new: nn.Linear | nn.Conv2d = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        else:
            new = nn.Conv2d(weight.shape[1], weight.shape[0], module.kernel_size, stride=module.stride,
                            padding=module.padding, dilation=module.dilation, bias=bias is not None)
        with torch.no_grad():
            new.weight.copy_(weight)
            if bias is not None and new.bias is not None:
                new.bias.copy_(bias)
        setattr(small, name, new)
        previous, kept_in = module, rows
    return small


def export_shrunk(model_path: Path, out_path: Path) -> Path:
    """The pruned model of a `model.pt` artifact with its dead neurons/channels removed, as TorchScript.

    The result loads with `torch.jit.load(out_path)` alone (no prunescope) and gives the masked model's
    outputs (eval mode) for inputs of the run's shape.
    """
    from worker.engine.shrink import export_torchscript, shrink_conv_model

    model, _, artifact = load_exported(model_path)
    shape = tuple(int(d) for d in artifact["input_shape"])
    small = shrink_conv_model(model, shape) if hasattr(model, "channel_chains") else (  # type: ignore[arg-type]
        shrink_model(model) if isinstance(model, nn.Sequential) else model)
    return export_torchscript(small, shape, out_path)  # type: ignore[arg-type]
