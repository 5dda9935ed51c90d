"""Doctor check of a profile's checkpoints: each one present (with its size), its SHA-256 where the file name
carries one, and the command that fetches (or, for built profiles, builds) what is missing."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .result import FAIL, OK, CheckResult, DoctorContext

# torch.hub's convention, which SAM's published files follow: name-<first hex digits of the file's SHA-256>.pth
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,64})\.(pth|pt|bin|safetensors)$")


def profile_checkpoints(profile) -> list[tuple[str, str]]:
    """(what, local path or hub id) for the LLM and every path field of every configured specialist."""
    found = [("llm", profile.llm.model)]
    for name, section in profile.specialists.items():
        for attribute in getattr(section, "paths", ()):
            value = getattr(section, attribute, None)
            if value:
                found.append((f"{name}.{attribute}", str(value)))
    return found


def _looks_local(where: str) -> bool:
    return where.startswith(("/", ".", "~")) or Path(where).exists() or where.count("/") != 1


def _local_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _hub_snapshot(repo: str) -> Path | None:
    """The local snapshot of hub model `repo` (what `vitron models fetch` downloaded), None when not cached."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (LocalEntryNotFoundError), or no huggingface_hub
        return None


def locate(where: str) -> tuple[Path | None, str]:
    """(local path, 'folder'/'file'/'hub cache') of a checkpoint, or (None, why it is missing)."""
    path = Path(where).expanduser()
    if path.exists():
        return path, "folder" if path.is_dir() else "file"
    if _looks_local(where):
        return None, f"{path} does not exist"
    snapshot = _hub_snapshot(where)
    if snapshot is None:
        return None, f"hub model {where!r} is not in the local Hugging Face cache"
    return snapshot, "hub cache"


def profile_weight_bytes(profile) -> int:
    """Bytes on disk of the profile's checkpoints that are here (a folder shared by two sections counts once)."""
    seen, total = set(), 0
    for _, where in profile_checkpoints(profile):
        path, _ = locate(where)
        if path is not None and path.resolve() not in seen:
            seen.add(path.resolve())
            total += _local_size(path)
    return total


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def check_checkpoints(context: DoctorContext) -> list[CheckResult]:
    profile = context.profile
    if profile is None:
        return [CheckResult("checkpoints", FAIL, f"profile {context.profile_name!r} cannot be loaded: "
                            f"{context.profile_error}", "vitron models list shows the profiles; fix the YAML named")]
    fix = profile.missing_hint()
    if profile.llm.source:  # converted from another layout: the fetch downloads and converts
        fix += f" (downloads {' and '.join(profile.llm.source.split())} and converts them; needs sentencepiece)"
    results = []
    for what, where in profile_checkpoints(profile):
        path, kind = locate(where)
        if path is None:
            results.append(CheckResult("checkpoints", FAIL, f"{what}: {kind}", fix))
            continue
        detail = f"{what}: {path} ({kind}, {_local_size(path) / 2**20:,.1f} MB)"
        expected = _HASH_IN_NAME.search(path.name) if path.is_file() else None
        if expected and context.hash_files:
            actual = _sha256(path)
            if not actual.startswith(expected.group(1)):
                results.append(CheckResult("checkpoints", FAIL, f"{detail}: SHA-256 {actual[:12]}... does not start "
                                           f"with {expected.group(1)} as its name says (a partial or wrong download)",
                                           f"delete {path} and {fix}"))
                continue
            detail += f", SHA-256 matches its name ({expected.group(1)})"
        results.append(CheckResult("checkpoints", OK, detail))
    return results
