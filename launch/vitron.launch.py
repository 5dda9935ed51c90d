"""Start vitron_node (a lifecycle node) on a robot's camera.

    ros2 launch vitron_ros vitron.launch.py image:=/camera/color/image_raw profile:=default
    ros2 launch vitron_ros vitron.launch.py namespace:=arm params_file:=/path/to/my_vitron.yaml autostart:=false

With autostart (the default here) the node configures and activates itself; otherwise drive it with
`ros2 lifecycle set /vitron configure` / `activate`, or a lifecycle manager.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    share = get_package_share_directory("vitron_ros")
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "vitron.yaml"),
            description="ros__parameters YAML for vitron_node",
        ),
        DeclareLaunchArgument("profile", default_value="default", description="model profile (vitron models list)"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda[:N]"),
        DeclareLaunchArgument("autostart", default_value="true", description="configure and activate on start"),
        DeclareLaunchArgument("image", default_value="image", description="camera image topic (remaps 'image')"),
        DeclareLaunchArgument(
            "camera_info", default_value="camera_info", description="camera_info topic (remaps 'camera_info')"
        ),
    ]  # fmt: skip
    node = LifecycleNode(
        package="vitron_ros",
        executable="vitron_node",
        name="vitron",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "profile": LaunchConfiguration("profile"),
                "device": LaunchConfiguration("device"),
                "autostart": ParameterValue(LaunchConfiguration("autostart"), value_type=bool),
            },
        ],
        remappings=[("image", LaunchConfiguration("image")), ("camera_info", LaunchConfiguration("camera_info"))],
    )
    return LaunchDescription([*arguments, node])
