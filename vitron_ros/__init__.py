"""vitron_ros: a pixel-level vision assistant (VITRON) for ROS 2.

`vitron_ros.core` holds everything that works without ROS (models, parser, specialists, pipeline); the ROS 2
node layer converts messages and calls it.
"""

__version__ = "0.1.0"
