"""`vitron engines build`: export every heavy network of a profile and build its engines ahead of time, each
checked against PyTorch, so a robot's first start does not spend minutes building (or go silent doing it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .backends import HALF_PARITY_TOLERANCE, PARITY_TOLERANCE, load_encoder, parity, parity_ok
from .config import ProfileConfig


@dataclass(frozen=True)
class EngineReport:
    name: str
    backend: str  # Encoder.describe(): what runs, and what was passed over and why
    seconds: float  # export + build (0 when the cache had it)
    max_abs_diff: float  # against the PyTorch module, on the export's example inputs
    output_scale: float  # max |reference|
    tolerance: float
    ok: bool  # matches PyTorch within the tolerance
    on_requested: bool  # runs on the backend asked for (not a fallback)

    def line(self) -> str:
        verdict = ("ok" if self.ok else "MISMATCH") + ("" if self.on_requested else " (fell back)")
        return (f"{self.name:<18} {self.backend:<40} {self.seconds:6.1f} s  max|diff| {self.max_abs_diff:.2e} "
                f"(output scale {self.output_scale:.2g}, tolerance {self.tolerance:.0e} x max(1, scale))  {verdict}")


def build_engines(profile: ProfileConfig, backend: str, device: str, progress=print) -> list[EngineReport]:
    """Load the profile on PyTorch, then put each network on `backend` (exporting and building into the engine
    cache, with the profile's fallbacks) and compare it with the PyTorch module."""
    from .pipeline import VitronPipeline

    reference = dataclasses.replace(profile, runtime=dataclasses.replace(
        profile.runtime, backend="torch", fallback=(), compile=False, memory_budget_mb=0, preload=True))
    pipeline = VitronPipeline.from_profile(reference, device=device, progress=progress)
    target = dataclasses.replace(profile.runtime, backend=backend)
    reports = []
    for name, exportable in pipeline.exportables().items():
        dtype = str(next(exportable.module.parameters()).dtype).removeprefix("torch.")
        encoder = load_encoder(exportable, target, pipeline.device, dtype, progress)
        diff, scale = parity(exportable, encoder)
        tolerance = PARITY_TOLERANCE if dtype == "float32" else HALF_PARITY_TOLERANCE
        reports.append(EngineReport(name, encoder.describe(), encoder.load_seconds, diff, scale, tolerance,
                                    parity_ok(diff, scale, tolerance), encoder.backend == backend))
    return reports
