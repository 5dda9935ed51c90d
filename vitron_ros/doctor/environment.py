"""Doctor checks of the Python environment: the interpreter, torch and the device it sees, torchvision paired with
torch, the libraries vitron_ros declares, the encoder backends and the GPU memory against the profile's budget.

Version ranges are not repeated here: they are read from the installed vitron_ros distribution's own metadata (the
ranges `setup.py` declares), so what pip enforces and what the doctor reports cannot drift apart."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from pathlib import Path

from .result import FAIL, OK, WARN, CheckResult, DoctorContext

DISTRIBUTION = "vitron_ros"
MIN_PYTHON = (3, 10)


def declared_requirements(extra: str = "") -> dict[str, object] | None:
    """Canonical name -> packaging Requirement, as the installed vitron_ros declares them (with `extra`, only that
    extra's); None when vitron_ros is not installed as a distribution (run from a bare source tree)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    try:
        lines = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = {}
    for line in lines:
        requirement = Requirement(line)
        marker = requirement.marker
        in_extra = marker is not None and "extra" in str(marker)
        if (extra and in_extra and marker.evaluate({"extra": extra})) or (
                not extra and (marker is None or (not in_extra and marker.evaluate()))):
            found[canonicalize_name(requirement.name)] = requirement
    return found


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def within(requirement, version: str) -> bool:
    # pre-releases count: JetPack's torch is versioned like 2.5.0a0+872d972e41.nv24.08
    return requirement.specifier.contains(version, prereleases=True)


def check_python(context: DoctorContext) -> list[CheckResult]:
    here = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        return [CheckResult("python", FAIL, f"Python {here} ({sys.executable}); vitron_ros needs 3.10 or newer",
                            "use Python 3.10+ (Ubuntu 22.04 and JetPack 6 ship 3.10)")]
    return [CheckResult("python", OK, f"Python {here} ({sys.executable})")]


def _gpu_hardware() -> str:
    """What says this machine has an NVIDIA GPU, without asking torch ('' when nothing does)."""
    if Path("/etc/nv_tegra_release").is_file():
        return "a Jetson (/etc/nv_tegra_release)"
    if Path("/proc/driver/nvidia/version").is_file() or Path("/dev/nvidia0").exists():
        return "an NVIDIA driver (/proc/driver/nvidia)"
    if shutil.which("nvidia-smi"):
        return "nvidia-smi on PATH"
    return ""


def check_torch(context: DoctorContext) -> list[CheckResult]:
    version = installed_version("torch")
    if version is None:
        return [CheckResult("torch", FAIL, "torch is not installed",
                            "install torch: on a Jetson JetPack's wheel, elsewhere pip install torch "
                            "(README, Install on a robot)")]
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything from ImportError to OSError
        return [CheckResult("torch", FAIL, f"torch {version} does not import: {type(exc).__name__}: {exc}"[:400],
                            "reinstall torch (pip install --force-reinstall torch, or JetPack's wheel on a Jetson)")]
    results = []
    requirement = (declared_requirements() or {}).get("torch")
    if requirement is not None and not within(requirement, torch.__version__):
        results.append(CheckResult("torch", FAIL, f"torch {torch.__version__} is outside vitron_ros's range "
                                   f"{requirement.specifier}", f"pip install '{requirement}'"))
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
    hardware = _gpu_hardware()
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        results.append(CheckResult("torch", OK, f"torch {torch.__version__} ({build} build), sees {names}"))
    elif context.device.startswith("cuda"):
        results.append(CheckResult("torch", FAIL, f"device {context.device!r} requested but torch {torch.__version__} "
                                   f"({build} build) sees no CUDA device",
                                   "install a CUDA build of torch that matches the driver, or run with device 'cpu'"))
    elif hardware:
        why = "it is a CPU-only build" if not torch.version.cuda else "the driver or device is not usable from it"
        results.append(CheckResult("torch", WARN, f"this machine has {hardware}, but torch {torch.__version__} "
                                   f"({build} build) cannot use it: {why}; everything runs on the CPU",
                                   "install the torch build for this GPU (Jetson: JetPack's wheel; x86: the CUDA "
                                   "wheel for your driver), then run vitron doctor again"))
    else:
        results.append(CheckResult("torch", OK, f"torch {torch.__version__} ({build} build), no GPU here: CPU"))
    return results


def check_torchvision(context: DoctorContext) -> list[CheckResult]:
    version, torch_version = installed_version("torchvision"), installed_version("torch")
    pin = f"torch=={torch_version}" if torch_version else "torch"
    fix = (f"pip install --upgrade '{pin}' torchvision (pip then picks the torchvision made for this torch; on a "
           f"Jetson build torchvision from source against JetPack's torch)")
    if version is None:
        return [CheckResult("torchvision", FAIL, "torchvision is not installed (segment-anything needs its ops)", fix)]
    from packaging.requirements import Requirement

    wanted = [Requirement(r) for r in importlib.metadata.requires("torchvision") or []]
    wanted = [r for r in wanted if r.name == "torch" and r.marker is None]
    if torch_version and wanted and not within(wanted[0], torch_version):
        return [CheckResult("torchvision", FAIL, f"torchvision {version} was made for {wanted[0]}, but torch "
                            f"{torch_version} is installed", fix)]
    try:
        import torch
        from torchvision.ops import nms

        kept = nms(torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 4.2]]), torch.tensor([0.9, 0.8]), 0.5)
        if kept.tolist() != [0]:
            raise RuntimeError(f"nms kept {kept.tolist()} of two overlapping boxes, expected [0]")
    except Exception as exc:  # noqa: BLE001 - a mismatched build fails at import, at load or in the operator
        return [CheckResult("torchvision", FAIL, f"torchvision {version}: its NMS operator does not run with torch "
                            f"{torch_version}: {type(exc).__name__}: {exc}"[:400], fix)]
    requirement = (declared_requirements() or {}).get("torchvision")
    if requirement is not None and not within(requirement, version):
        return [CheckResult("torchvision", FAIL, f"torchvision {version} is outside vitron_ros's range "
                            f"{requirement.specifier}", fix)]
    return [CheckResult("torchvision", OK, f"torchvision {version}, paired with torch {torch_version} (NMS runs)")]


def check_libraries(context: DoctorContext) -> list[CheckResult]:
    """Every other requirement vitron_ros declares: installed, and in its range."""
    requirements = declared_requirements()
    if requirements is None:
        return [CheckResult("libraries", WARN, f"{DISTRIBUTION} is not installed as a distribution here, so its "
                            "declared ranges cannot be read", "pip install -e . (or colcon build) in the source tree")]
    results, fine = [], []
    for name, requirement in sorted(requirements.items()):
        if name in ("torch", "torchvision"):
            continue
        version = installed_version(requirement.name)
        if version is None:
            results.append(CheckResult("libraries", FAIL, f"{requirement.name} is not installed",
                                       f"pip install '{requirement}'"))
        elif not within(requirement, version):
            results.append(CheckResult("libraries", FAIL, f"{requirement.name} {version} is outside "
                                       f"{requirement.specifier}", f"pip install '{requirement}'"))
        else:
            fine.append(f"{requirement.name} {version}")
    return results + [CheckResult("libraries", OK, ", ".join(fine))] if fine else results


def check_backends(context: DoctorContext) -> list[CheckResult]:
    """Which encoder backends can run here, on the profile's device, and the TensorRT engine cache's state."""
    from ..core.backends import BACKENDS

    device = _device(context)
    runtime = getattr(context.profile, "runtime", None)
    order = runtime.order() if runtime is not None else ["torch"]
    available, unavailable, results = [], [], []
    for name, entry in BACKENDS.items():
        reason = entry.unavailable(device)
        if reason is None:
            available.append(name)
        else:
            unavailable.append(f"{name}: {reason}")
            if name == order[0]:  # the profile's own choice; an unavailable fallback is never reached while it runs
                results.append(CheckResult("backends", WARN, f"{name}, the profile's backend, cannot run on {device}: "
                                           f"{reason}; the encoders fall back along {order}", _backend_fix(name)))
    if not any(name in available for name in order):
        results.append(CheckResult("backends", FAIL, f"no backend in the profile's order {order} runs on {device}",
                                   "add 'torch' to runtime.fallback in the profile"))
    providers = ""
    if installed_version("onnxruntime") or installed_version("onnxruntime-gpu"):
        try:
            import onnxruntime

            providers = f"; ONNX Runtime {onnxruntime.__version__} providers {onnxruntime.get_available_providers()}"
        except Exception as exc:  # noqa: BLE001
            providers = f"; ONNX Runtime does not import ({type(exc).__name__})"
    passed = f" (not here: {'; '.join(unavailable)})" if unavailable else ""
    results.append(CheckResult("backends", OK, f"on {device}: {', '.join(available)} can run{providers}{passed}"))
    if runtime is not None:
        results += _engine_cache(runtime, device)
    return results


def _backend_fix(name: str) -> str:
    return {"onnxruntime": "pip install 'vitron_ros[onnx]' (onnxruntime-gpu on CUDA machines)",
            "tensorrt": "TensorRT comes with JetPack; on x86 install NVIDIA's tensorrt wheel for your CUDA"}.get(
                name, f"see vitron_ros.core.backends ({name})")


def _engine_cache(runtime, device: str) -> list[CheckResult]:
    import json

    from ..core.config import resolve_path

    folder = Path(resolve_path(runtime.engine_cache))
    keys = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not keys:
        return [CheckResult("backends", OK, f"engine cache {folder}: no TensorRT engines yet (built on first use, "
                            f"or ahead of time with vitron engines build)")]
    here = {}
    try:
        import tensorrt
        import torch

        major, minor = torch.cuda.get_device_capability(torch.device(device))
        here = {"tensorrt_version": tensorrt.__version__, "compute_capability": f"{major}.{minor}"}
    except Exception:  # noqa: BLE001 - no TensorRT or no GPU: engines cannot be matched to this machine
        pass
    stale = []
    for key in keys:
        try:
            found = json.loads(key.read_text())
        except (OSError, ValueError):
            stale.append(f"{key.name} (unreadable)")
            continue
        differs = [f"{k} {found.get(k)!r} (here {v!r})" for k, v in here.items() if found.get(k) != v]
        if differs:
            stale.append(f"{key.stem}: {'; '.join(differs)}")
    if not here:
        return [CheckResult("backends", OK, f"engine cache {folder}: {len(keys)} engine(s); TensorRT or CUDA is not "
                            "usable here, so they are not checked against this machine")]
    if stale:
        return [CheckResult("backends", WARN, f"engine cache {folder}: {len(stale)} of {len(keys)} engine(s) built "
                            f"for another GPU or TensorRT: {', '.join(stale)}"[:600],
                            "vitron engines build --profile <profile> --backend tensorrt (they would be rebuilt "
                            "at start otherwise, which takes minutes)")]
    return [CheckResult("backends", OK, f"engine cache {folder}: {len(keys)} engine(s) built for this GPU")]


def _device(context: DoctorContext) -> str:
    if context.device != "auto":
        return context.device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001 - the torch check reports why
        return "cpu"


def check_memory(context: DoctorContext) -> list[CheckResult]:
    """The profile's memory budget and checkpoint sizes against the memory of the device it runs on."""
    from .checkpoints import profile_weight_bytes

    runtime = getattr(context.profile, "runtime", None)
    if runtime is None:
        return [CheckResult("memory", OK, "no profile loaded: nothing to compare")]
    device, budget_mb = _device(context), runtime.memory_budget_mb
    weights_mb = profile_weight_bytes(context.profile) / 2**20
    if device.startswith("cuda"):
        import torch

        free, total = torch.cuda.mem_get_info(torch.device(device))
        where = f"{device}: {free / 2**20:,.0f} MB free of {total / 2**20:,.0f} MB"
        available_mb = free / 2**20
    else:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        available_mb = os.sysconf("SC_AVPHYS_PAGES") * page / 2**20
        where = f"cpu: {available_mb:,.0f} MB free of {pages * page / 2**20:,.0f} MB"
    need_mb = min(budget_mb, weights_mb) if budget_mb else weights_mb
    detail = (f"{where}; the profile's checkpoints hold {weights_mb:,.0f} MB on disk, memory budget "
              f"{f'{budget_mb:,} MB' if budget_mb else 'unlimited'}")
    if budget_mb and budget_mb > available_mb:
        return [CheckResult("memory", WARN, f"{detail}: the budget is more than is free",
                            f"set runtime.memory_budget_mb below {available_mb:,.0f} in the profile")]
    if need_mb > available_mb:
        return [CheckResult("memory", WARN, f"{detail}: the weights need more than is free",
                            "set runtime.memory_budget_mb (least recently used specialists are unloaded), or use a "
                            "smaller profile")]
    return [CheckResult("memory", OK, detail)]
