"""Specialists loaded on first use under a memory budget: the least recently used is unloaded when the next one
would not fit, and a query that needs it again reloads it.

    pool = SpecialistPool(profile, device="cuda", progress=print)   # profile.runtime.memory_budget_mb
    editor = pool.acquire("editor")       # loads it (unloading others if needed), or raises SpecialistUnavailable

A load that fails (a missing checkpoint, CUDA out of memory) raises `SpecialistUnavailable` naming the specialist
and the cause; what is loaded stays loaded and keeps serving. `status()` gives what diagnostics show: each loaded
specialist's bytes, load time and encoders' backends, failures, and what the pool is doing (loading, exporting,
building an engine).
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointLoadError, short_error
from .specialists import SPECIALISTS, Specialist

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")


class SpecialistUnavailable(CheckpointLoadError):
    """A specialist could not be loaded (or reloaded); the message names it and says why."""


@dataclass
class LoadRecord:
    bytes: int  # its weights' bytes (shared tensors included)
    load_seconds: float
    encoders: dict[str, str]  # encoder name -> "backend dtype (passed over: ...)"


def tensor_bytes(modules) -> int:
    """Bytes of the parameters and buffers of `modules`, each storage counted once (shared weights, tied layers)."""
    seen, total = set(), 0
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            storage = tensor.untyped_storage()
            key = (str(tensor.device), storage.data_ptr())
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()
    return total


def section_paths(section) -> list[Path]:
    """The local files or folders a section's `paths` fields name (a hub id through the local cache, if there)."""
    found = []
    for field in getattr(type(section), "paths", ()):
        value = getattr(section, field, None)
        if not isinstance(value, str):
            continue
        path = Path(value)
        if not path.exists() and value.count("/") == 1 and not value.startswith((".", "/", "~")):
            try:  # a hub id: its snapshot in the local Hugging Face cache (robots run offline)
                from huggingface_hub import snapshot_download

                path = Path(snapshot_download(value, revision=getattr(section, "revision", None), local_files_only=True))
            except Exception:  # noqa: BLE001 - not fetched: nothing to estimate from
                continue
        if path.exists():
            found.append(path.resolve())
    return found


def disk_bytes(section, already_loaded: set[Path] = frozenset()) -> int:
    """Weight files under a section's paths, except those already loaded (the generator shares the editor's
    folder): the estimate of what its load adds, before it is loaded."""
    total = 0
    for path in section_paths(section):
        if path in already_loaded:
            continue
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.suffix in _WEIGHT_SUFFIXES]
        total += sum(p.stat().st_size for p in files if p.is_file())
    return total


class SpecialistPool:
    """Registry name -> specialist, loaded on `acquire`; a read-only Mapping view of the configured names."""

    def __init__(self, profile=None, device: str = "cpu", progress=print, loaded: dict[str, Specialist] | None = None):
        self.profile = profile
        self.device = device
        self.names: list[str] = list(profile.specialists) if profile is not None else list(loaded or {})
        self.budget_bytes = (profile.runtime.memory_budget_mb << 20) if profile is not None else 0
        self.check = None  # (name, specialist) -> None or raises: the pipeline's compatibility checks
        self.failures: dict[str, str] = {}  # name -> why its last load failed
        self.activity = ""  # what the pool is doing now, for diagnostics ("building engine for unet ...")
        self._progress = progress
        self._loaded: OrderedDict[str, Specialist] = OrderedDict()  # least recently used first
        self._records: dict[str, LoadRecord] = {}
        self._known_bytes: dict[str, int] = {}
        self._pinned: set[str] = set()
        self._memory = 0  # bytes of what is loaded, recounted on each load and unload (diagnostics ask at 20 Hz)
        self._in_use: Counter[str] = Counter()  # calls running on each specialist now: never unloaded under them
        self._loading: dict[str, threading.Event] = {}  # loads under way (outside the lock: they take minutes)
        self._lock = threading.RLock()
        for name, specialist in (loaded or {}).items():
            self._admit(name, specialist, 0.0)

    # -- mapping view ---------------------------------------------------------------------------------------------
    def __contains__(self, name) -> bool:
        return name in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def keys(self):
        return dict.fromkeys(self.names).keys()

    def __getitem__(self, name: str) -> Specialist:
        if name not in self.names:
            raise KeyError(name)
        return self.acquire(name)

    def get(self, name: str, default=None):
        return self.acquire(name) if name in self.names else default

    def items(self):
        return [(name, self.acquire(name)) for name in self.names]

    def peek(self, name: str) -> Specialist | None:
        """The specialist if it is loaded now, without loading it or marking it used."""
        with self._lock:
            return self._loaded.get(name)

    # -- loading --------------------------------------------------------------------------------------------------
    def acquire(self, name: str) -> Specialist:
        """The loaded specialist, loading it first (and unloading the least recently used ones to make room).

        The load runs outside the pool's lock, so diagnostics and other specialists' calls go on while an engine
        builds; a second caller for the same specialist waits for that load."""
        while True:
            with self._lock:
                if name in self._loaded:
                    self._loaded.move_to_end(name)  # the most recently used is last
                    return self._loaded[name]
                if name not in self.names:
                    raise KeyError(f"no specialist {name!r} in this profile; configured: {self.names}")
                if self.profile is None:
                    raise SpecialistUnavailable(f"the {name} was unloaded and this pool has no profile to reload it")
                pending = self._loading.get(name)
                if pending is None:
                    self._loading[name] = threading.Event()
                    self._make_room(self._estimate(name), keep=name)
                    break
            pending.wait()  # another caller is loading it: take its result (or its failure)
            with self._lock:
                if name not in self._loaded and name in self.failures:
                    raise SpecialistUnavailable(self.failures[name])
        self.activity = f"loading {name}"
        start = time.perf_counter()
        try:
            specialist = SPECIALISTS[name].build(self.profile.section(name), self.profile, self.device, self._report)
            if self.check is not None:
                self.check(name, specialist)
        except Exception as exc:  # noqa: BLE001 - out of memory, a missing or broken checkpoint: reported
            specialist = None
            self._free_cache()
            message = f"the {name} could not be loaded: {short_error(exc)}"
            with self._lock:
                self.failures[name] = message  # the caller reports it (an answer's errors, a CLI's one line)
            raise SpecialistUnavailable(message) from exc
        finally:
            self.activity = ""
            with self._lock:
                self._loading.pop(name).set()
        with self._lock:
            self.failures.pop(name, None)
            self._admit(name, specialist, time.perf_counter() - start)
            self._make_room(0, keep=name)
            return specialist

    @contextlib.contextmanager
    def using(self, name: str):
        """`with pool.using("editor") as editor:` the specialist, loaded, and never unloaded while the block runs."""
        while True:
            specialist = self.acquire(name)
            with self._lock:
                if self._loaded.get(name) is specialist:  # not unloaded between the two
                    self._in_use[name] += 1
                    break
        try:
            yield specialist
        finally:
            with self._lock:
                self._in_use[name] -= 1

    def _estimate(self, name: str) -> int:
        """Bytes a load of `name` will add: measured at its last load, else its weight files not already loaded."""
        if name in self._known_bytes:
            return self._known_bytes[name]
        loaded = {path for other in self._loaded for path in section_paths(self.profile.section(other))}
        return disk_bytes(self.profile.section(name), loaded)

    def preload(self) -> None:
        """Load every specialist in profile order while it fits the budget without unloading another. A required
        one (the segmenter) that fails raises; another is recorded in `failures` and tried again on first use."""
        for name in self.names:
            with self._lock:
                estimate = self._estimate(name) if self.profile is not None else 0
                if self.budget_bytes and self._loaded and self.memory_bytes() + estimate > self.budget_bytes:
                    self._progress(f"not preloading {name}: it would not fit the {self.budget_bytes >> 20} MB budget "
                                   "beside what is loaded; it loads on first use")
                    continue
            try:
                self.acquire(name)
            except SpecialistUnavailable as exc:
                if SPECIALISTS[name].required:
                    raise
                self._progress(f"{exc}; the others serve, and it is tried again on first use")

    def pin(self, name: str) -> None:
        """Never unload `name` (a live tracker's streams hold its model)."""
        with self._lock:
            self._pinned.add(name)

    def unload(self, name: str) -> None:
        with self._lock:
            if self._loaded.pop(name, None) is None:
                return
            record = self._records.pop(name)
            self._memory = self._count_memory()
            self._progress(f"unloaded {name} ({record.bytes / 2**20:.1f} MB) to stay within the "
                           f"{self.budget_bytes / 2**20:.0f} MB budget")
            self._free_cache()

    def _admit(self, name: str, specialist: Specialist, seconds: float) -> None:
        size = tensor_bytes(specialist.modules()) if hasattr(specialist, "modules") else 0
        encoders = {key: enc.describe() for key, enc in getattr(specialist, "encoders", dict)().items()}
        self._loaded[name] = specialist
        self._known_bytes[name] = size
        self._records[name] = LoadRecord(size, seconds, encoders)
        self._memory = self._count_memory()
        self._progress(f"loaded {name}: {size / 2**20:.1f} MB in {seconds:.1f} s" +
                       "".join(f"; {key} on {text}" for key, text in encoders.items()))

    def _make_room(self, incoming: int, keep: str) -> None:
        if not self.budget_bytes:
            return
        while self.memory_bytes() + incoming > self.budget_bytes:
            victims = [n for n in self._loaded if n != keep and n not in self._pinned and not self._in_use[n]]
            if not victims:
                self._progress(f"{keep} needs about {incoming / 2**20:.0f} MB beyond what is loaded: over the "
                               f"{self.budget_bytes / 2**20:.0f} MB budget with nothing left to unload (in use or pinned)")
                return
            self.unload(victims[0])

    def _free_cache(self) -> None:
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def _report(self, message: str) -> None:
        """Progress of a load: exports and engine builds show in `activity` while they run."""
        self.activity = message
        self._progress(message)

    # -- reports --------------------------------------------------------------------------------------------------
    def memory_bytes(self) -> int:
        """Bytes of the loaded specialists' weights, shared tensors once."""
        return self._memory

    def _count_memory(self) -> int:
        with self._lock:
            modules = [m for s in self._loaded.values() if hasattr(s, "modules") for m in s.modules()]
        return tensor_bytes(modules)

    def loaded(self) -> dict[str, LoadRecord]:
        with self._lock:
            return dict(self._records)

    def status(self) -> dict[str, str]:
        """Key -> value for diagnostics."""
        activity = self.activity  # read without waiting on a load
        with self._lock:
            values = {
                "memory_budget_mb": f"{self.budget_bytes / 2**20:.0f}" if self.budget_bytes else "unlimited",
                "specialists_loaded": ",".join(self._loaded) or "none",
                "specialists_memory_mb": f"{self.memory_bytes() / 2**20:.1f}",
                "activity": activity or "idle",
            }
            for name, record in self._records.items():
                values[f"{name}_mb"] = f"{record.bytes / 2**20:.1f}"
                values[f"{name}_load_s"] = f"{record.load_seconds:.2f}"
                values.update({f"{name}.{key}_backend": text for key, text in record.encoders.items()})
            values.update({f"{name}_load_error": text for name, text in self.failures.items()})
            return values
