"""How the training loop computes: autocast precision (with fp16's loss scaler), channels-last, torch.compile."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunescope.contract.config import TrainingConfig

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Compute:
    """The loop's numeric setup. Parameters, gradients, masks and optimizer state always stay fp32: autocast
    only lowers the precision of the forward/backward ops, so masks are applied to fp32 master weights and a
    pruned weight stays exactly 0 whatever `precision` says."""

    device_type: str = "cpu"
    dtype: torch.dtype | None = None  # None: plain fp32, no autocast
    scaler: torch.amp.GradScaler | None = None  # fp16 only: bf16 has fp32's exponent range
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def for_run(cls, training: TrainingConfig, device: str) -> Compute:
        """The setup `training` asks for on `device`; a ValueError names the field when the device can't do it."""
        device_type = "cuda" if device.startswith("cuda") else "cpu"
        if training.precision == "fp16" and device_type != "cuda":
            raise ValueError("training.precision 'fp16' needs a CUDA device (fp16 autocast and its loss scaler "
                             "are GPU features here); use 'bf16' on a CPU, or run on a CUDA worker")
        if (training.precision == "bf16" and device_type == "cuda"
                and not torch.cuda.is_bf16_supported(including_emulation=False)):
            raise ValueError("training.precision 'bf16' needs a GPU with native bfloat16 (Ampere or newer); "
                             "use 'fp16' on this GPU")
        scaler = torch.amp.GradScaler("cuda") if training.precision == "fp16" else None
        return cls(device_type=device_type, dtype=AUTOCAST_DTYPES.get(training.precision), scaler=scaler,
                   channels_last=training.channels_last, compile=training.compile)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Convert `model` in place (channels-last) and return the module to call forward on (maybe compiled).

        The pruner, the optimizer, checkpoints and export keep using `model` itself: a compiled wrapper shares
        its parameters but prefixes their names with `_orig_mod.`."""
        if self.channels_last:
            # Only 4-d tensors (conv weights) change layout; Linear-only models are left as they are.
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs omit it
        if self.compile:
            return torch.compile(model)  # type: ignore[return-value]
        return model

    def autocast(self) -> AbstractContextManager[Any]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward pass; under fp16 the gradients are unscaled before anyone (the pruner) reads them."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer step; under fp16 skipped (and the scale lowered) when a gradient overflowed."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


FP32 = Compute()
