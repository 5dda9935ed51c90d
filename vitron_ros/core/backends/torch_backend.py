"""The PyTorch backend: the wrapped module itself, eager or through `torch.compile`, in the encoder's dtype."""

from __future__ import annotations

from .exportable import Exportable, resolve_dtype


def as_tuple(output) -> tuple:
    return output if isinstance(output, tuple) else tuple(output) if isinstance(output, list) else (output,)


class TorchRunner:
    def __init__(self, exportable: Exportable, device: str, dtype: str, compile: bool = False):
        import torch

        self.device = device
        self.module = exportable.module.eval()  # the live model's own module: already on its device, in its dtype
        parameter = next(self.module.parameters(), None)
        self.dtype = parameter.dtype if parameter is not None else resolve_dtype(dtype)
        # compile the forward, not the module: the module stays the one the rest of the model holds
        self.forward = torch.compile(self.module) if compile else self.module

    def __call__(self, *inputs) -> tuple:
        import torch

        inputs = [t.to(self.device, self.dtype) if t.is_floating_point() else t.to(self.device) for t in inputs]
        with torch.inference_mode():
            return as_tuple(self.forward(*inputs))
