"""`vitron doctor`: checks that this machine can run vitron_ros as configured, and says how to fix what cannot.

One registry (`CHECKS`) knows every check; `vitron doctor` runs them all, and the node runs the same ones at configure
and publishes their results in /diagnostics, so a robot that publishes nothing says why.

    results = run_checks(doctor_context("shapes"))
    print(format_report(results)); sys.exit(exit_code(results))
"""

from __future__ import annotations

from collections.abc import Callable

from .checkpoints import check_checkpoints
from .environment import check_backends, check_libraries, check_memory, check_python, check_torch, check_torchvision
from .result import FAIL, OK, WARN, CheckResult, DoctorContext
from .ros import check_interfaces, check_ros

# name -> check, in report order. A check returns one result per finding and never raises (run_checks contains
# one that does, as a failure naming the check).
CHECKS: dict[str, Callable[[DoctorContext], list[CheckResult]]] = {
    "python": check_python,
    "torch": check_torch,
    "torchvision": check_torchvision,
    "libraries": check_libraries,
    "ros": check_ros,
    "interfaces": check_interfaces,
    "checkpoints": check_checkpoints,
    "backends": check_backends,
    "memory": check_memory,
}


def doctor_context(profile_name: str, profiles_file: str | None = None, device: str = "auto",
                   hash_files: bool = True) -> DoctorContext:
    """The context for `profile_name`; a profile that does not load is reported by the checkpoints check."""
    from ..core.config import load_profile

    try:
        profile, error = load_profile(profile_name, profiles_file), ""
    except Exception as exc:  # noqa: BLE001 - unknown profile, unreadable or invalid YAML: a finding, not a crash
        profile, error = None, str(exc)
    return DoctorContext(profile, profile_name, error, device, hash_files)


def run_checks(context: DoctorContext, names: list[str] | None = None) -> list[CheckResult]:
    results = []
    for name in names or list(CHECKS):
        if name not in CHECKS:
            raise ValueError(f"unknown doctor check {name!r}; known: {', '.join(CHECKS)}")
        try:
            results += CHECKS[name](context)
        except Exception as exc:  # noqa: BLE001 - a check that breaks is itself a finding
            results.append(CheckResult(name, FAIL, f"the check itself raised {type(exc).__name__}: {exc}"[:400],
                                       "report this with the output of vitron doctor --json"))
    return results


def exit_code(results: list[CheckResult]) -> int:
    return 1 if any(r.status == FAIL for r in results) else 0


def worst(results: list[CheckResult]) -> str:
    statuses = {r.status for r in results}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK


def format_report(results: list[CheckResult]) -> str:
    marks = {OK: "ok  ", WARN: "WARN", FAIL: "FAIL"}
    lines = []
    for r in results:
        lines.append(f"{marks[r.status]} {r.check:<12} {r.detail}")
        if r.fix:
            lines.append(f"{'':<18}fix: {r.fix}")
    counts = {s: sum(r.status == s for r in results) for s in (OK, WARN, FAIL)}
    lines.append(f"{counts[OK]} ok, {counts[WARN]} warning(s), {counts[FAIL]} failure(s)")
    return "\n".join(lines)


__all__ = ["CHECKS", "FAIL", "OK", "WARN", "CheckResult", "DoctorContext", "doctor_context", "exit_code",
           "format_report", "run_checks", "worst"]
