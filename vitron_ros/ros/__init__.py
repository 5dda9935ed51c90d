"""The ROS 2 layer (lifecycle node, message conversions, launch) goes here.

Contract with the core: a node callback converts the message (pure functions), hands the frame to one
`vitron_ros.core.pipeline.VitronPipeline` off the subscription thread, builds result messages from the
`VitronResult` and copies the input header onto every output. Nothing in `vitron_ros.core` may import from here.
"""
