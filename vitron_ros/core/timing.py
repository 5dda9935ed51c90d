"""Per-stage wall-clock timing for results and benchmarks."""

from __future__ import annotations

import time
from contextlib import contextmanager

# Stages that are model forward passes; everything else is pipeline overhead (bench/ reports the ratio).
MODEL_STAGES = ("vision_encoder", "llm_generate", "signal_forward", "segmenter_prompts", "segmenter_answer")


class StageTimer:
    def __init__(self, sync=None, on_stage=None):
        self.timings: dict[str, float] = {}
        self._sync = sync  # e.g. torch.cuda.synchronize, so GPU work is charged to the stage that launched it
        self._on_stage = on_stage  # called with each stage's name as it starts (progress feedback)
        self._start = time.perf_counter()

    @contextmanager
    def stage(self, name: str):
        if self._on_stage is not None:
            self._on_stage(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._sync is not None:
                self._sync()
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    def finish(self) -> dict[str, float]:
        self.timings["total"] = time.perf_counter() - self._start
        return dict(self.timings)
