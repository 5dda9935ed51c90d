"""Specialist registry: name -> factory(profile, device). Adding a specialist is a new file plus an entry here."""

from __future__ import annotations

from collections.abc import Callable

from .base import Frame, Specialist, SpecialistCall, SpecialistOutput


def _segmenter(profile, device) -> Specialist:
    from .segmenter import SamSegmenter

    return SamSegmenter.from_profile(profile, device)


SPECIALIST_FACTORIES: dict[str, Callable] = {
    "segmenter": _segmenter,
}

__all__ = ["SPECIALIST_FACTORIES", "Frame", "Specialist", "SpecialistCall", "SpecialistOutput"]
