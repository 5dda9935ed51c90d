"""TF for `target_frame`: the transform from a camera's optical frame, looked up at the image's own stamp.

tf2_ros is optional (it is not on the package registries; a ROS 2 install from apt or source has it). Without it
the node publishes 3D in the optical frame only and says so in its log and diagnostics.
"""

from __future__ import annotations

from ..core.lifting import RigidTransform

LOOKUP_TIMEOUT_S = 0.05  # a transform this late is reported missing for that frame (no wait after a miss)


class TfTransforms:
    """lookup(target, source, header) -> RigidTransform | reason, from a tf2 buffer the node's own executor fills."""

    def __init__(self, node):
        from tf2_ros import Buffer, TransformListener

        self.buffer = Buffer()
        # spin_thread=False: the listener's subscriptions run on the node's executor (a listener thread of its own
        # would spin the whole node on a second executor)
        self.listener = TransformListener(self.buffer, node, spin_thread=False)
        self._waits = True  # after a miss, do not wait per frame until a lookup succeeds again

    def __call__(self, target: str, source: str, header):
        from rclpy.duration import Duration
        from rclpy.time import Time
        from tf2_ros import TransformException

        try:
            # at the image's stamp, not the latest: a moving robot's camera was elsewhere a moment ago
            found = self.buffer.lookup_transform(target, source, Time.from_msg(header.stamp),
                                                 timeout=Duration(seconds=LOOKUP_TIMEOUT_S if self._waits else 0.0))
        except TransformException as error:
            self._waits = False
            return f"no transform {source} -> {target} at the image's stamp: {error}"
        self._waits = True
        t, q = found.transform.translation, found.transform.rotation
        return RigidTransform.from_quaternion((q.x, q.y, q.z, q.w), (t.x, t.y, t.z), target)

    def close(self) -> None:
        self.listener.unregister()


def tf_lookup(node):
    """(TfTransforms, "") or (None, why there is none)."""
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return None, "tf2_ros is not installed: 3D is published in the camera's optical frame only"
    return TfTransforms(node), ""
