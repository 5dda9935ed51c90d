"""The ROS 2 layer: a thin face on the core.

Only `node.py` imports rclpy. Everything it calls is plain Python over a `MessageFactory` (rclpy's generated
classes on a robot, rosbags' typestore here), so it is tested without ROS 2:

- `interfaces`: message types without ROS (rosbags typestore of `msg/` + vision_msgs), factories
- `image_conversions`: sensor_msgs Image / CompressedImage <-> numpy, cv_bridge semantics
- `frame_buffer`, `query_worker`: per-camera frames (latest + ring) and one worker thread per camera
- `handlers`: Query / Segment / Ask / VideoQuery / AddObjects / RemoveObject / topic requests -> messages;
  `result_messages`: VitronResult -> messages
- `tracking`, `tracking_loop`: per-camera live tracking (~/tracks), the Track goal's logic, a thread per camera
- `diagnostics`, `parameters`: /diagnostics and the node's typed parameters
- `replay`: `vitron replay` over bags and videos with the same handlers (queries and tracking)
"""
