"""`vitron models fetch`: download a profile's checkpoints once, with progress, for robots that run offline."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from .config import ProfileConfig
from .errors import CheckpointNotFoundError, VitronInputError

_CHUNK = 1 << 20


def download_file(url: str, destination: str | os.PathLike, progress: bool = True) -> Path:
    """Stream `url` to `destination` with a progress bar; the file appears only once complete."""
    from tqdm import tqdm

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=destination.parent, suffix=".part", delete=False) as handle:
            try:
                with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name, disable=not progress) as bar:
                    while chunk := response.read(_CHUNK):
                        handle.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            except BaseException:
                os.unlink(handle.name)
                raise
    os.replace(handle.name, destination)
    print(f"{destination}: sha256 {digest.hexdigest()}")
    return destination


def fetch_profile(profile: ProfileConfig, progress: bool = True) -> None:
    """Download the LLM and every configured specialist's checkpoints (as its registry entry says), skipping
    what is here."""
    from .specialists import SPECIALISTS

    if profile.fetch_hint:  # built, not downloaded (the tiny profile): nothing here can fetch it
        if not Path(profile.llm.model).is_dir():
            raise CheckpointNotFoundError(f"profile {profile.name!r} is not downloaded from anywhere: "
                                          f"{profile.fetch_hint}")
        print(f"LLM folder present: {profile.llm.model}")
        return
    if profile.llm.source:
        convert_llm(profile)
    else:
        fetch_hub_model("LLM", profile.llm.model, profile.llm.revision)
    for name, section in profile.specialists.items():
        if SPECIALISTS[name].fetch is not None:
            SPECIALISTS[name].fetch(section, profile)


def fetch_file(what: str, path: str, url: str | None, profile_name: str, progress: bool = True) -> None:
    """One checkpoint file from `url` to `path`, unless it is there."""
    if Path(path).is_file():
        print(f"{what} checkpoint present: {path}")
    elif url:
        print(f"downloading {what} from {url}")
        download_file(url, path, progress)
    else:
        raise VitronInputError(f"profile {profile_name!r}: {path} is missing and no url is configured")


def fetch_hub_model(what: str, model: str, revision: str | None) -> Path:
    if Path(os.path.expanduser(model)).is_dir():
        print(f"{what} folder present: {model}")
        return Path(os.path.expanduser(model))
    from huggingface_hub import snapshot_download

    print(f"downloading {what} {model} from the Hugging Face hub")
    path = snapshot_download(model, revision=revision)  # hub's own progress bars
    print(f"{what} ready: {path}")
    return Path(path)


def convert_llm(profile: ProfileConfig) -> None:
    """An LLM published in another layout (llm.source): download each source, then the family's converter writes
    llm.model. Skipped when llm.model is there."""
    from .model.families import checkpoint_family

    target = Path(profile.llm.model)
    if (target / "config.json").is_file():
        print(f"LLM folder present: {target}")
        return
    family = checkpoint_family(profile.llm.family, f"profile {profile.name!r}")
    if family.convert is None:
        raise VitronInputError(f"profile {profile.name!r}: llm.source is set but the {family.name!r} family has no "
                               "converter; point llm.model at the published checkpoint instead")
    sources = [fetch_hub_model("LLM source", hub_id, None) for hub_id in profile.llm.source.split()]
    family.convert(sources, target, print)
