"""What one doctor check reports, and what the checks are given."""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class CheckResult:
    """One finding. `status`: "ok"; "warn" (vitron runs, not as a robot would want: no GPU in use, a default that
    hides the node from other machines); "fail" (what is configured cannot run; `vitron doctor` exits non-zero).
    `fix`: one line saying what to do, for every warn and fail."""

    check: str  # the registry name of the check that found it ("torch", "interfaces", ...)
    status: str
    detail: str
    fix: str = ""

    def __post_init__(self):
        if self.status not in (OK, WARN, FAIL):
            raise ValueError(f"CheckResult.status must be one of {OK!r}, {WARN!r}, {FAIL!r}, got {self.status!r}")
        if self.status != OK and not self.fix:
            raise ValueError(f"{self.check}: a {self.status} needs a one-line fix ({self.detail!r})")


@dataclass(frozen=True)
class DoctorContext:
    """What the checks look at: the profile to run (None when it could not be loaded: `profile_error` says why),
    the device the node or CLI would use, and whether to hash checkpoint files (slow for multi-GB files; the node
    skips it at configure)."""

    profile: object | None  # vitron_ros.core.config.ProfileConfig
    profile_name: str
    profile_error: str = ""
    device: str = "auto"
    hash_files: bool = True
