"""Error types the core raises, so callers (CLI, ROS node) can turn each into a clear message."""


class VitronInputError(ValueError):
    """A caller passed something the pipeline cannot use: bad image, coordinates, request or config value."""


class CheckpointNotFoundError(FileNotFoundError):
    """A model file or hub id that a profile names is not on this machine."""


class CheckpointLoadError(RuntimeError):
    """A model file exists but could not be loaded (corrupt, wrong architecture, unsafe format)."""


def short_error(exc: BaseException, limit: int = 300) -> str:
    """'TypeName: first line of the message' (cut at `limit`), for one-line reports of a contained failure."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit]}" if lines else type(exc).__name__


class QueryCancelled(RuntimeError):
    """The caller cancelled a query while it ran (an action's cancel request); no result was produced."""
