"""Encoder backends: the one place that knows how a heavy network is run.

A heavy network (SAM's image encoder, SAM 2's, the CLIP vision tower, the diffusion UNet) is handed over as an
`Exportable`: a trace-friendly wrapper with example inputs (each model's own file (specialists/*.py, model/vitron_llm.py)). `load_encoder` runs it on the
profile's backend: eager PyTorch (or `torch.compile`), ONNX Runtime on an exported file, or a TensorRT engine built
from that file and cached. A backend that cannot run here says why, and the next one in `runtime.fallback` is
tried; the `Encoder` it returns carries that story (`describe()`), which the node shows in diagnostics.

    encoder = load_encoder(sam_image_encoder_export(sam), runtime, device="cuda", dtype="float16")
    (embedding,) = encoder(preprocessed)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import CheckpointLoadError, short_error
from .exportable import Exportable, RuntimeConfig, resolve_dtype


class BackendUnavailable(RuntimeError):
    """A backend cannot run on this machine (not installed, no GPU, no matching execution provider)."""


@dataclass(frozen=True)
class BackendEntry:
    name: str
    # (device) -> None when the backend can run there, else the reason it cannot (shown to the user)
    unavailable: Callable[[str], str | None]
    # (exportable, runtime, device, dtype, progress) -> a runner: (*torch tensors) -> tuple of torch tensors
    build: Callable[..., Callable]


def _torch_unavailable(device: str) -> str | None:
    return None


def _build_torch(exportable, runtime, device, dtype, progress):
    from .torch_backend import TorchRunner

    return TorchRunner(exportable, device, dtype, compile=runtime.compile)


def _ort_unavailable(device: str) -> str | None:
    from .onnxruntime_backend import unavailable

    return unavailable(device)


def _build_ort(exportable, runtime, device, dtype, progress):
    from .onnxruntime_backend import OrtRunner

    return OrtRunner.create(exportable, runtime, device, dtype, progress)


def _trt_unavailable(device: str) -> str | None:
    from .tensorrt_backend import unavailable

    return unavailable(device)


def _build_trt(exportable, runtime, device, dtype, progress):
    from .tensorrt_backend import TensorRTRunner

    return TensorRTRunner.create(exportable, runtime, device, dtype, progress)


BACKENDS: dict[str, BackendEntry] = {
    "torch": BackendEntry("torch", _torch_unavailable, _build_torch),
    "onnxruntime": BackendEntry("onnxruntime", _ort_unavailable, _build_ort),
    "tensorrt": BackendEntry("tensorrt", _trt_unavailable, _build_trt),
}


@dataclass
class Encoder:
    """A heavy network on its chosen backend: `encoder(*inputs) -> tuple of outputs` (torch tensors on `device`).

    Inputs are cast to the encoder's dtype; outputs come back in it."""

    name: str
    backend: str
    dtype: str
    device: str
    runner: Callable
    skipped: list[str] = field(default_factory=list)  # "tensorrt: not installed" for each backend passed over
    load_seconds: float = 0.0

    def __call__(self, *inputs):
        return self.runner(*inputs)

    def describe(self) -> str:
        """'onnxruntime float32 (tensorrt: not installed)' - what runs, and what was passed over and why."""
        passed = f" (passed over: {'; '.join(self.skipped)})" if self.skipped else ""
        return f"{self.backend} {self.dtype}{passed}"


def load_encoder(
    exportable: Exportable, runtime: RuntimeConfig, device: str, dtype: str = "float32", progress=print
) -> Encoder:
    """`exportable` on the first backend of `runtime.order()` that runs here; each one passed over is reported."""
    skipped: list[str] = []
    for name in runtime.order():
        entry = BACKENDS[name]
        reason = entry.unavailable(device)
        if reason is None:
            start = time.perf_counter()
            try:
                runner = entry.build(exportable, runtime, device, dtype, progress)
            except BackendUnavailable as exc:
                reason = str(exc)
            except Exception as exc:  # noqa: BLE001 - a failed export or build: the next backend may still run it
                reason = short_error(exc)
            else:
                encoder = Encoder(exportable.name, name, dtype, device, runner, skipped, time.perf_counter() - start)
                if skipped:
                    progress(f"{exportable.name}: running on {encoder.describe()}")
                return encoder
        skipped.append(f"{name}: {reason}")
        progress(f"{exportable.name}: backend {name} unavailable ({reason}); falling back")
    raise CheckpointLoadError(f"{exportable.name}: no backend can run it here: {'; '.join(skipped)}")


__all__ = [
    "BACKENDS", "HALF_PARITY_TOLERANCE", "PARITY_TOLERANCE", "BackendEntry", "BackendUnavailable", "Encoder",
    "Exportable", "RuntimeConfig", "load_encoder", "parity", "parity_ok", "resolve_dtype",
]


def parity(exportable: Exportable, encoder: Encoder) -> tuple[float, float]:
    """(max abs difference, max abs reference value) between `encoder` and the PyTorch module it was made from, on
    the export's example inputs, over every output. The module runs as it is (its device and dtype)."""
    import torch

    parameter = next(exportable.module.parameters())
    inputs = [t.to(parameter.device, parameter.dtype) if t.is_floating_point() else t.to(parameter.device)
              for t in exportable.example]
    with torch.inference_mode():
        reference = exportable.module(*inputs)
        outputs = encoder(*inputs)
    reference = reference if isinstance(reference, (tuple, list)) else (reference,)
    pairs = list(zip(outputs, reference, strict=True))
    diff = max(float((o.float().cpu() - r.float().cpu()).abs().max()) for o, r in pairs)
    scale = max(float(r.float().abs().max()) for _, r in pairs)
    return diff, scale


PARITY_TOLERANCE = 1e-3  # max abs difference allowed per unit of output scale (max(1, max |reference|)), float32
HALF_PARITY_TOLERANCE = 5e-2  # the same in float16 / bfloat16


def parity_ok(diff: float, scale: float, tolerance: float = PARITY_TOLERANCE) -> bool:
    return diff <= tolerance * max(1.0, scale)
