"""TF for `target_frame`: the transform from a camera's optical frame, looked up at the image's own stamp.

tf2_ros is optional (it is not on the package registries; a ROS 2 install from apt or source has it). Without it
the node publishes 3D in the optical frame only and says so in its log and diagnostics.
"""

from __future__ import annotations

from ..core.lifting import RigidTransform

LOOKUP_TIMEOUT_S = 0.05  # a transform that is late by more than this is reported missing for that frame


def tf_lookup(node):
    """(lookup, "") with lookup(target, source, header) -> RigidTransform | reason, or (None, why there is none)."""
    try:
        from rclpy.duration import Duration
        from rclpy.time import Time
        from tf2_ros import Buffer, TransformException, TransformListener
    except ImportError:
        return None, "tf2_ros is not installed: 3D is published in the camera's optical frame only"
    buffer = Buffer()
    listener = TransformListener(buffer, node, spin_thread=True)

    def lookup(target: str, source: str, header):
        try:
            # at the image's stamp, not the latest: a moving robot's camera was elsewhere a moment ago
            found = buffer.lookup_transform(target, source, Time.from_msg(header.stamp),
                                            timeout=Duration(seconds=LOOKUP_TIMEOUT_S))
        except TransformException as error:
            return f"no transform {source} -> {target} at the image's stamp: {error}"
        t, q = found.transform.translation, found.transform.rotation
        return RigidTransform.from_quaternion((q.x, q.y, q.z, q.w), (t.x, t.y, t.z), target)

    lookup.listener = listener  # kept alive with the lookup
    return lookup, ""
