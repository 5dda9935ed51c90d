"""Model profiles: YAML -> frozen dataclasses -> constructors.

Unknown keys raise `VitronInputError` naming the key, so a typo in a profile never silently falls back to a
default. `${cache}` in a path expands to the model cache folder ($VITRON_CACHE, else ~/.cache/vitron_ros); `${share}` to
the package's data folder (the repo root, or share/vitron_ros when installed), where shipped checkpoints live.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .errors import VitronInputError

BOX_FORMATS = ("normalized", "pixel")


@dataclass(frozen=True)
class LlmConfig:
    model: str  # local folder of a Hugging Face LLaVA checkpoint, or a hub id fetched by `vitron models fetch`
    # how the LLM writes boxes: "normalized" (0-1 of the padded square) or "pixel"; unset: what the checkpoint's
    # vitron_facts.json says, else "normalized" (a profile that contradicts its checkpoint is refused)
    box_format: str | None = None
    max_new_tokens: int = 64  # answer length cap; greedy decoding
    dtype: str = "float16"  # used on CUDA; CPU always runs float32 (half precision is slow or unsupported there)
    revision: str | None = None  # hub revision to pin, when `model` is a hub id
    system_prompt: str | None = None  # the system turn the checkpoint was tuned with (None: LLaVA-style default)
    backend: str = "transformers"  # how the LM runs (core/model/language_model.LLM_BACKENDS)
    # decode under the invocation grammar generated from the loaded specialists (core/reply_grammar.py), so every
    # reply parses; false: free decoding, and replies that break the format are reported as errors
    grammar: bool = True
    # how the checkpoint is prompted and answers (core/model/families.py: vitron, llava-1.5, glamm); unset: what its
    # vitron_facts.json says, else vitron (published checkpoints have no facts file: their profile names it)
    family: str | None = None
    # hub ids `vitron models fetch` downloads and the family's converter turns into `model` (GLaMM: its checkpoint and
    # its CLIP tower, space-separated); unset: `model` itself is the published checkpoint
    source: str | None = None


BACKEND_NAMES = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("auto", "float16", "bfloat16", "float32")


@dataclass(frozen=True)
class RuntimeConfig:
    """How the heavy networks run (see core/backends): backend, precision, engine cache, memory budget."""

    backend: str = "torch"  # torch | onnxruntime | tensorrt, for the encoders (SAM, SAM 2, CLIP vision, UNet)
    fallback: tuple[str, ...] = ("onnxruntime", "torch")  # tried in order when `backend` cannot run here
    compile: bool = False  # torch backend: torch.compile each encoder (slow first call, faster after)
    # "auto": each section's own dtype on CUDA; float16 | bfloat16 | float32: every model and specialist on CUDA.
    # CPU always runs float32 (half precision is slow or unsupported there).
    precision: str = "auto"
    engine_cache: str = "${cache}/engines"  # exported ONNX files and TensorRT engines, keyed by what built them
    tensorrt_workspace_mb: int = 4096  # TensorRT builder scratch memory
    memory_budget_mb: int = 0  # specialists' weights kept loaded at once; least recently used unloaded; 0: no limit
    preload: bool = True  # load every specialist at start (as many as the budget holds); else each on first use

    paths: ClassVar[tuple[str, ...]] = ("engine_cache",)

    def check(self, where: str) -> None:
        for name in (self.backend, *self.fallback):
            if name not in BACKEND_NAMES:
                raise VitronInputError(f"{where}: backend {name!r}: expected one of {BACKEND_NAMES}")
        if self.precision not in PRECISIONS:
            raise VitronInputError(f"{where}.precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if self.memory_budget_mb < 0:
            raise VitronInputError(f"{where}.memory_budget_mb: must be >= 0, got {self.memory_budget_mb}")

    def order(self) -> list[str]:
        """Backends to try, first choice first, each once."""
        return list(dict.fromkeys((self.backend, *self.fallback)))

    def dtype_for(self, section_dtype: str, device: str) -> str:
        """The dtype a model runs in: float32 on CPU; on CUDA the runtime's precision, or the section's under auto."""
        if not device.startswith("cuda"):
            return "float32"
        return section_dtype if self.precision == "auto" else self.precision


@dataclass(frozen=True)
class ProfileConfig:
    name: str
    llm: LlmConfig
    # registry name -> that specialist's config section, one YAML section each (see specialists.SPECIALISTS);
    # a specialist without a section is not loaded, and invocations naming it get "unknown module"
    specialists: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    # what to tell a user whose checkpoints are missing (default: `vitron models fetch --profile NAME`); a
    # profile whose weights are built, not downloaded, names the command that builds them
    fetch_hint: str = ""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def missing_hint(self) -> str:
        """What a missing-checkpoint error tells the user to run."""
        return self.fetch_hint or f"run `vitron models fetch --profile {self.name}`"

    def section(self, name: str) -> Any | None:
        """The config of specialist `name`, or None when this profile does not configure it."""
        return self.specialists.get(name)

    def with_section(self, name: str, section: Any) -> ProfileConfig:
        return dataclasses.replace(self, specialists={**self.specialists, name: section})


def default_profiles_path() -> Path:
    """The profiles YAML: $VITRON_PROFILES, else the repo's config/, else the ament share folder."""
    if env := os.environ.get("VITRON_PROFILES"):
        return Path(env)
    candidates = [
        Path(__file__).resolve().parents[2] / "config" / "profiles.yaml",
        Path(sys.prefix) / "share" / "vitron_ros" / "config" / "profiles.yaml",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise VitronInputError(f"profiles.yaml not found; looked in {[str(c) for c in candidates]}; set VITRON_PROFILES")


def cache_dir() -> Path:
    return Path(os.environ.get("VITRON_CACHE", Path.home() / ".cache" / "vitron_ros")).expanduser()


def build_checked(cls: type, values: Any, where: str) -> Any:
    """Construct dataclass `cls` from a mapping, rejecting unknown keys by name."""
    if not isinstance(values, dict):
        raise VitronInputError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise VitronInputError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    try:
        return cls(**values)
    except TypeError as exc:  # a required key is missing
        raise VitronInputError(f"{where}: {exc}") from None


def share_dir() -> Path:
    """Where the package's data lives: the repo root in a checkout, share/vitron_ros in an install."""
    root = Path(__file__).resolve().parents[2]
    if (root / "config" / "profiles.yaml").is_file():
        return root
    return Path(sys.prefix) / "share" / "vitron_ros"


def resolve_path(path: str) -> str:
    path = path.replace("${cache}", str(cache_dir())).replace("${share}", str(share_dir()))
    return os.path.expanduser(path)


def build_section(cls: type, values: Any, where: str) -> Any:
    """A specialist's config section: keys checked, `cls.paths` expanded, then `cls.check(where)` if it has one."""
    section = build_checked(cls, values, where)
    expanded = {
        name: resolve_path(value) for name in getattr(cls, "paths", ()) if isinstance(value := getattr(section, name), str)
    }
    section = dataclasses.replace(section, **expanded)
    if hasattr(section, "check"):
        section.check(where)
    return section


def profile_from_dict(name: str, raw: dict) -> ProfileConfig:
    from .specialists import SPECIALISTS  # the registry knows each specialist's section; it imports this module

    where = f"profile '{name}'"
    if not isinstance(raw, dict):
        raise VitronInputError(f"{where}: expected a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    llm = build_checked(LlmConfig, raw.pop("llm", None), f"{where}.llm")
    runtime_raw = dict(raw.pop("runtime", None) or {})
    if "fallback" in runtime_raw:
        runtime_raw["fallback"] = tuple(runtime_raw["fallback"] or ())
    runtime = build_section(RuntimeConfig, runtime_raw, f"{where}.runtime")
    llm = dataclasses.replace(llm, model=resolve_path(llm.model))
    if llm.box_format is not None and llm.box_format not in BOX_FORMATS:
        raise VitronInputError(f"{where}.llm.box_format: expected one of {BOX_FORMATS}, got {llm.box_format!r}")
    specialists = {}
    for key, entry in SPECIALISTS.items():
        section = raw.pop(key, None)
        if section is None and entry.required:
            raise VitronInputError(f"{where}: the {key!r} section is required")
        if section is not None:
            specialists[key] = build_section(entry.config, section, f"{where}.{key}")
    if "specialists" in raw:
        raise VitronInputError(f"{where}: specialists are top-level sections named {sorted(SPECIALISTS)}")
    return build_checked(ProfileConfig, {"name": name, "llm": llm, "runtime": runtime, "specialists": specialists, **raw}, where)


def read_yaml(path: Path, what: str) -> Any:
    """Parse a YAML file; unreadable files and bad YAML become VitronInputError naming `what` and the path."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise VitronInputError(f"cannot read {what} {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise VitronInputError(f"{what} {path} is not valid YAML: {exc}") from None


def load_profiles(path: str | os.PathLike | None = None) -> dict[str, ProfileConfig]:
    path = Path(path) if path is not None else default_profiles_path()
    raw = read_yaml(path, "profiles file")
    if not isinstance(raw, dict) or set(raw) != {"profiles"} or not isinstance(raw["profiles"], dict):
        raise VitronInputError(f"profiles file {path}: expected a single top-level key 'profiles' with a mapping")
    return {name: profile_from_dict(name, body) for name, body in raw["profiles"].items()}


def load_profile(name: str, path: str | os.PathLike | None = None) -> ProfileConfig:
    profiles = load_profiles(path)
    if name not in profiles:
        raise VitronInputError(f"unknown profile {name!r}; available: {', '.join(sorted(profiles))}")
    return profiles[name]
