"""The TensorRT backend: an engine built from the encoder's ONNX file, cached and never used on a GPU or TensorRT
it was not built for.

An engine only runs on the GPU model and TensorRT version that built it, and building one takes minutes on a
Jetson. The cache keys each engine by what built it (`EngineKey`: ONNX hash, TensorRT version, compute capability,
precision, shape profile), kept beside it as JSON; an engine whose key differs in anything (stale, or copied from
another machine) is rebuilt, never loaded. `vitron engines build` does the builds ahead of time.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import short_error
from . import BackendUnavailable
from .exportable import Exportable, cached_onnx, engine_folder, file_sha256


def unavailable(device: str) -> str | None:
    if not device.startswith("cuda"):
        return "needs a CUDA device"
    try:
        import tensorrt  # noqa: F401 - availability only
    except ImportError:
        return "not installed (the tensorrt Python package; on a Jetson it comes with JetPack)"
    except Exception as exc:  # noqa: BLE001 - PyPI's stub wheels raise on import where the real library is missing
        return f"import failed: {short_error(exc, 200)}"
    return None


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; any difference means another engine."""

    onnx_sha256: str
    tensorrt_version: str
    compute_capability: str  # "8.7" (AGX Orin), "9.0" (H100): engines do not move between them
    precision: str
    shape_profile: str  # JSON: input -> [min, opt, max] shapes

    def differences(self, other: dict) -> list[str]:
        mine = asdict(self)
        return [f"{k} {other.get(k)!r} (here {v!r})" for k, v in mine.items() if other.get(k) != v]


class EngineCache:
    """Engines in a folder, one per encoder and precision, each with its key beside it (`.json`)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def paths(self, name: str, key: EngineKey) -> tuple[Path, Path]:
        """One engine per encoder, precision and ONNX file (two profiles, or SAM ViT-B and ViT-H, never share one);
        the key beside it says what built it."""
        stem = self.folder / f"{name}-{key.precision}-{key.onnx_sha256[:12]}"
        return stem.with_suffix(".engine"), stem.with_suffix(".json")

    def lookup(self, name: str, key: EngineKey) -> tuple[bytes | None, str]:
        """(engine bytes, '') when a cached engine was built with exactly `key`; else (None, why not)."""
        engine, meta = self.paths(name, key)
        if not engine.is_file():
            return None, "no cached engine"
        try:
            found = json.loads(meta.read_text())
        except (OSError, ValueError):
            return None, f"{engine} has no readable key ({meta.name}): origin unknown"
        differences = key.differences(found)
        if differences:
            return None, f"{engine} was built for another setup: {'; '.join(differences)}"
        return engine.read_bytes(), ""

    def store(self, name: str, key: EngineKey, data: bytes) -> Path:
        engine, meta = self.paths(name, key)
        self.folder.mkdir(parents=True, exist_ok=True)
        meta.unlink(missing_ok=True)  # the key goes last: an engine without one is never trusted
        partial = engine.with_suffix(".engine.partial")
        partial.write_bytes(data)
        partial.replace(engine)
        meta.write_text(json.dumps(asdict(key), indent=1))
        return engine

    def load_or_build(self, name: str, key: EngineKey, build: Callable[[], bytes], progress=print) -> bytes:
        data, why = self.lookup(name, key)
        if data is not None:
            progress(f"{name}: TensorRT engine from the cache ({self.paths(name, key)[0]})")
            return data
        progress(f"building engine for {name} ({key.precision}): {why}; this takes minutes on a Jetson")
        start = time.perf_counter()
        data = build()
        path = self.store(name, key, data)
        progress(f"built engine for {name} in {time.perf_counter() - start:.0f} s -> {path}")
        return data


def engine_key(onnx_path: Path, exportable: Exportable, precision: str, device: str) -> EngineKey:
    import tensorrt
    import torch

    major, minor = torch.cuda.get_device_capability(torch.device(device))
    return EngineKey(
        onnx_sha256=file_sha256(onnx_path),
        tensorrt_version=tensorrt.__version__,
        compute_capability=f"{major}.{minor}",
        precision=precision,
        shape_profile=json.dumps(exportable.shape_profile(), sort_keys=True),
    )


def build_engine(onnx_path: Path, exportable: Exportable, precision: str, workspace_mb: int, progress=print) -> bytes:
    """The TensorRT Python API's build, from the ONNX file, with one optimisation profile over the dynamic axes."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendUnavailable(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "float16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bfloat16":
        config.set_flag(trt.BuilderFlag.BF16)
    if hasattr(trt, "IProgressMonitor"):  # TensorRT >= 10: the build's phases as progress lines

        class BuildProgress(trt.IProgressMonitor):
            def __init__(self):
                trt.IProgressMonitor.__init__(self)

            def phase_start(self, phase_name, parent_phase, num_steps):
                if parent_phase is None:
                    progress(f"  engine build: {phase_name} ({num_steps} steps)")

            def step_complete(self, phase_name, step):
                return True  # False would cancel the build

            def phase_finish(self, phase_name):
                pass

        config.progress_monitor = BuildProgress()
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in exportable.shape_profile().items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendUnavailable(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    return bytes(serialized)


class TensorRTRunner:
    def __init__(self, engine, device: str):
        import torch

        self.engine, self.device = engine, device
        self.context = engine.create_execution_context()
        self.lock = threading.Lock()  # one context: shapes and addresses are set per call (cameras share an encoder)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        import tensorrt as trt

        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.torch_dtypes = {n: {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
                                 trt.int32: torch.int32, trt.int64: torch.int64}[engine.get_tensor_dtype(n)]
                             for n in names}

    @classmethod
    def create(cls, exportable: Exportable, runtime, device: str, dtype: str, progress=print) -> TensorRTRunner:
        import tensorrt as trt

        onnx_path = cached_onnx(exportable, runtime, dtype, progress)  # in the model's dtype; the builder flag matches
        key = engine_key(onnx_path, exportable, dtype, device)
        cache = EngineCache(engine_folder(runtime))
        build = lambda: build_engine(onnx_path, exportable, dtype, runtime.tensorrt_workspace_mb, progress)  # noqa: E731
        data = cache.load_or_build(exportable.name, key, build, progress)
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(data)
        if engine is None:  # a matching key but an unreadable engine (a truncated file): rebuild once
            progress(f"cached engine for {exportable.name} did not deserialize; rebuilding")
            data = build()
            cache.store(exportable.name, key, data)
            engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(data)
        if engine is None:
            raise BackendUnavailable(f"TensorRT cannot deserialize the engine it built for {exportable.name}")
        return cls(engine, device)

    def __call__(self, *inputs) -> tuple:
        with self.lock:
            return self._run(inputs)

    def _run(self, inputs) -> tuple:
        import torch

        stream = torch.cuda.current_stream(torch.device(self.device))
        held = []
        for name, tensor in zip(self.inputs, inputs, strict=True):
            tensor = tensor.to(self.device, self.torch_dtypes[name]).contiguous()
            held.append(tensor)
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                low, _, high = self.engine.get_tensor_profile_shape(name, 0)
                raise ValueError(f"{name} shape {tuple(tensor.shape)} is outside the engine's profile "
                                 f"{tuple(low)}..{tuple(high)}; rebuild with a wider shape range")
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = []
        for name in self.outputs:
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self.torch_dtypes[name], device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return tuple(outputs)
