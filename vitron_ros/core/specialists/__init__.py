"""Specialist registry: name -> factory(profile, device). Adding a specialist is a new file plus an entry here."""

from __future__ import annotations

from collections.abc import Callable

from .base import Frame, Specialist, SpecialistCall, SpecialistOutput


def _segmenter(profile, device) -> Specialist:
    from .segmenter import SamSegmenter

    return SamSegmenter.from_profile(profile, device)


def _tracker(profile, device) -> Specialist | None:
    if profile.tracker is None:
        return None  # this profile has no video model; tracking invocations get a clear "unknown module" error
    from .tracker import Sam2Tracker

    return Sam2Tracker.from_profile(profile, device)


# Factories return None for a specialist the profile does not configure.
SPECIALIST_FACTORIES: dict[str, Callable] = {
    "segmenter": _segmenter,
    "tracker": _tracker,
}

__all__ = ["SPECIALIST_FACTORIES", "Frame", "Specialist", "SpecialistCall", "SpecialistOutput"]
