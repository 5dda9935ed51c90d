"""The ONNX Runtime backend: the encoder exported once to the engine cache and run by an InferenceSession
(CPU, or CUDA with onnxruntime-gpu)."""

from __future__ import annotations

import numpy as np

from ..errors import short_error
from . import BackendUnavailable
from .exportable import Exportable, cached_onnx, resolve_dtype


def unavailable(device: str) -> str | None:
    try:
        import onnx  # noqa: F401 - torch's exporter needs it
        import onnxruntime
    except ImportError as exc:
        return f"not installed ({exc.name}; pip install 'vitron_ros[onnx]', or onnxruntime-gpu for CUDA)"
    if device.startswith("cuda") and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    return None


def providers_for(device: str) -> list:
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OrtRunner:
    def __init__(self, session, device: str, dtype: str):
        self.session, self.device, self.dtype = session, device, dtype
        self.input_names = [i.name for i in session.get_inputs()]
        self.numpy_dtype = np.float16 if dtype == "float16" else np.float32

    @classmethod
    def create(cls, exportable: Exportable, runtime, device: str, dtype: str, progress=print) -> OrtRunner:
        import onnxruntime

        if dtype == "bfloat16":  # ONNX Runtime kernels rarely take bfloat16; float16 is its half precision
            dtype = "float16"
        path = cached_onnx(exportable, runtime, dtype if device.startswith("cuda") else "float32", progress)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            session = onnxruntime.InferenceSession(str(path), options, providers=providers_for(device))
        except Exception as exc:  # noqa: BLE001 - a file the runtime cannot load: the next backend is tried
            raise BackendUnavailable(f"cannot load {path}: {short_error(exc)}") from None
        return cls(session, device, dtype if device.startswith("cuda") else "float32")

    def __call__(self, *inputs) -> tuple:
        import torch

        feed = {}
        for name, tensor in zip(self.input_names, inputs, strict=True):
            array = tensor.detach().cpu()
            array = array.float().numpy().astype(self.numpy_dtype) if array.is_floating_point() else array.numpy()
            feed[name] = array
        outputs = self.session.run(None, feed)
        torch_dtype = resolve_dtype(self.dtype)
        return tuple(torch.from_numpy(np.ascontiguousarray(o)).to(self.device, torch_dtype) for o in outputs)
