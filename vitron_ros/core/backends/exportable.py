"""What a backend is handed: a trace-friendly network with example inputs, and its ONNX export (cached, checked)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RuntimeConfig, resolve_path
from ..errors import CheckpointLoadError, short_error

_DTYPES = ("float32", "float16", "bfloat16")


def resolve_dtype(name: str):
    import torch

    if name not in _DTYPES:
        raise ValueError(f"dtype {name!r}: expected one of {_DTYPES}")
    return getattr(torch, name)


@dataclass
class Exportable:
    """A network as backends take it: `module(*example)` returns a tensor or a tuple of tensors.

    `dynamic` names the axes that vary at run time (input name -> {axis: name}); `shape_range` gives each dynamic
    axis its (min, opt, max) for a TensorRT optimisation profile. Wrappers live in each model's own file (specialists/*.py, model/vitron_llm.py)."""

    name: str  # e.g. "sam_image_encoder"; engine and ONNX file names start with it
    module: object  # torch.nn.Module, eval mode, trace-friendly (no Python control flow on tensor values)
    example: tuple  # example inputs (torch tensors), float32
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    shape_range: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)  # dynamic axis -> (min, opt, max)

    def fingerprint(self, dtype: str) -> str:
        """sha256 of the weights, the input shapes and the dtype: what an ONNX file exported from this depends on."""
        import torch

        digest = hashlib.sha256()
        for key, tensor in self.module.state_dict().items():
            digest.update(key.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        spec = {"inputs": [list(t.shape) for t in self.example], "dynamic": {k: dict(v) for k, v in self.dynamic.items()},
                "dtype": dtype, "names": [self.input_names, self.output_names], "torch": torch.__version__}
        digest.update(json.dumps(spec, sort_keys=True, default=str).encode())
        return digest.hexdigest()

    def shape_profile(self) -> dict[str, list[list[int]]]:
        """input name -> [min shape, opt shape, max shape], from the example and `shape_range`."""
        profile = {}
        for name, tensor in zip(self.input_names, self.example, strict=True):
            shapes = [list(tensor.shape), list(tensor.shape), list(tensor.shape)]
            for axis, dim in self.dynamic.get(name, {}).items():
                low, opt, high = self.shape_range.get(dim, (tensor.shape[axis],) * 3)
                shapes[0][axis], shapes[1][axis], shapes[2][axis] = low, opt, high
            profile[name] = shapes
        return profile


def engine_folder(runtime: RuntimeConfig) -> Path:
    folder = Path(resolve_path(runtime.engine_cache))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def export_onnx(exportable: Exportable, path: str | Path, dtype: str = "float32") -> str:
    """Export with torch's ONNX exporter (torch.export first; the TorchScript tracer where that fails).
    Returns which exporter wrote the file."""
    import copy
    import warnings

    import torch

    module = exportable.module
    if any(p.dtype != resolve_dtype(dtype) for p in module.parameters() if p.is_floating_point()):
        module = copy.deepcopy(module).to(resolve_dtype(dtype))  # the live model keeps its dtype
    example = tuple(t.to(resolve_dtype(dtype)) if t.is_floating_point() else t for t in exportable.example)
    kwargs = dict(input_names=list(exportable.input_names), output_names=list(exportable.output_names),
                  dynamic_axes={k: dict(v) for k, v in exportable.dynamic.items()} or None, opset_version=18)
    # protobuf caps a file at 2 GB: larger networks (SAM ViT-H, SD 1.5's UNet in float32) keep their weights in a
    # data file beside the graph, which ONNX Runtime and TensorRT's parser read from the same folder
    external = sum(t.numel() * t.element_size() for t in module.state_dict().values()) > 1_500_000_000
    errors = []
    for dynamo in (True, False):
        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(module, example, str(path), dynamo=dynamo, external_data=external,
                                            verbose=False, **kwargs)
            if dynamo and program is not None:
                program.save(str(path), external_data=external)
            return "torch.export" if dynamo else "torchscript"
        except Exception as exc:  # noqa: BLE001 - the other exporter may manage; both failing is reported
            errors.append(f"{'torch.export' if dynamo else 'torchscript'}: {short_error(exc)}")
    raise CheckpointLoadError(f"cannot export {exportable.name} to ONNX: {' | '.join(errors)}")


def cached_onnx(exportable: Exportable, runtime: RuntimeConfig, dtype: str, progress=print) -> Path:
    """The ONNX file of `exportable` in the engine cache, exported once per fingerprint (weights, shapes, dtype)."""
    folder = engine_folder(runtime)
    path = folder / f"{exportable.name}-{dtype}-{exportable.fingerprint(dtype)[:16]}.onnx"
    if not path.is_file():
        progress(f"exporting {exportable.name} to ONNX ({dtype}) -> {path}")
        start = time.perf_counter()
        partial = path.with_suffix(".onnx.partial")
        exporter = export_onnx(exportable, partial, dtype)
        partial.replace(path)  # a crash mid-export never leaves a file that looks complete
        progress(f"exported {exportable.name} with {exporter} in {time.perf_counter() - start:.1f} s")
    return path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
