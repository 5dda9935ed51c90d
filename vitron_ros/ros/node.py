"""vitron_node: a lifecycle node serving VITRON on live camera streams.

    configure  -> read parameters, create subscriptions, publishers, services and the Ask, Track and VideoQuery
                  actions, and one tracking thread per camera
    activate   -> load the models of `profile` on `device`
    deactivate -> free them (GPU cache included); services answer "models are not loaded" meanwhile
    cleanup    -> destroy what configure created

A thin layer: callbacks convert messages and hand work to `VitronHandlers` on a per-camera worker thread; model
work never runs in a subscription callback. Everything it calls is tested without ROS (test/test_ros_*.py).
"""

from __future__ import annotations

import dataclasses
import threading

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String
from vision_msgs.msg import Detection2DArray
from visualization_msgs.msg import MarkerArray
from vitron_ros_msgs.action import Ask, Track, VideoQuery
from vitron_ros_msgs.msg import Answer, GroundedMaskArray, TrackedObjectArray
from vitron_ros_msgs.srv import AddObjects, Query, RemoveObject, Segment

from ..core.config import load_profile
from ..core.errors import QueryCancelled
from .diagnostics import (
    LatencyWindow,
    camera_info_summary,
    diagnostics_msg,
    model_memory_bytes,
)
from .frame_buffer import CameraFrames
from .handlers import QueryOutcome, VitronHandlers, describe_error
from .interfaces import RclpyFactory
from .parameters import NodeParameters, camera_info_topic
from .query_worker import CameraBusyError, QueryWorker
from .tracking import TrackStep, run_track_goal
from .tracking_loop import TrackingLoop

OUTPUT_TYPES = {"answer": Answer, "masks": GroundedMaskArray, "detections": Detection2DArray,
                "markers": MarkerArray, "overlay": Image, "tracks": TrackedObjectArray,
                "tracks_overlay": Image}  # fmt: skip


class VitronNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("vitron", **kwargs)
        self.factory = RclpyFactory()
        for name, description in NodeParameters.descriptions().items():
            default = getattr(NodeParameters(), name)
            descriptor = ParameterDescriptor(description=description)
            # An empty list says nothing about its element type; declare string arrays by type.
            self.declare_parameter(name, Parameter.Type.STRING_ARRAY if default == [] else default, descriptor)
        self.params: NodeParameters | None = None
        self.handlers: VitronHandlers | None = None
        self.workers: dict[str, QueryWorker] = {}
        self.tracking_loops: dict[str, TrackingLoop] = {}
        self.latency = LatencyWindow()
        self.camera_infos: dict[str, CameraInfo] = {}
        # Not rclpy's own _publishers / _subscriptions lists: these are what configure created, for cleanup.
        self._created = []
        self._outputs = {}
        self._diagnostics = None

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self.params = NodeParameters.from_dict(self._parameter_values())
            load_profile(self.params.profile, self.params.config_file or None)  # fail now on an unknown profile
        except Exception as error:  # noqa: BLE001 - a bad parameter fails the transition with its message
            self.get_logger().error(f"configure failed: {describe_error(error)}")
            return TransitionCallbackReturn.FAILURE
        p = self.params
        cameras = {name: CameraFrames(name, p.clip_length, p.max_rate_hz) for name in p.cameras}
        self.handlers = VitronHandlers(self.factory, cameras, overlay=p.overlay, video_frames=p.video_frames)
        self.workers = {name: QueryWorker(name, p.max_pending_queries) for name in cameras}
        self.tracking_loops = {
            name: TrackingLoop(frames, lambda n=name: self.handlers.tracking.get(n), self._publish_tracks,
                               self.get_logger().warning)
            for name, frames in cameras.items()
        }
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=p.qos_depth,
            reliability=ReliabilityPolicy.BEST_EFFORT if p.reliability == "best_effort" else ReliabilityPolicy.RELIABLE,
        )
        frames_group = MutuallyExclusiveCallbackGroup()
        requests_group = ReentrantCallbackGroup()
        for name, topic in p.cameras.items():
            frames = cameras[name]
            loop = self.tracking_loops[name]
            if p.transport == "compressed":
                sub = self.create_subscription(
                    CompressedImage, f"{topic}/compressed",
                    lambda msg, f=frames, t=loop: f.add_compressed(msg) and t.wake(), qos, callback_group=frames_group,
                )  # fmt: skip
            else:
                sub = self.create_subscription(
                    Image, topic, lambda msg, f=frames, t=loop: f.add_image(msg) and t.wake(), qos,
                    callback_group=frames_group,
                )  # fmt: skip
            self._created.append(sub)
            if p.camera_info:
                info_topic = camera_info_topic(topic)
                self._created.append(
                    self.create_subscription(
                        CameraInfo, info_topic, lambda msg, n=name: self.camera_infos.__setitem__(n, msg), qos,
                        callback_group=frames_group,
                    )
                )  # fmt: skip
        for topic, msg_type in OUTPUT_TYPES.items():
            if topic in ("overlay", "tracks_overlay") and not p.overlay:
                continue
            self._outputs[topic] = self.create_lifecycle_publisher(msg_type, f"~/{topic}", 10)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._created += [
            self.create_subscription(String, "~/query", self._on_topic_query, 10, callback_group=requests_group),
            self.create_service(Query, "~/query", self._on_query, callback_group=requests_group),
            self.create_service(Segment, "~/segment", self._on_segment, callback_group=requests_group),
            self.create_service(AddObjects, "~/add_objects", self._on_add_objects, callback_group=requests_group),
            self.create_service(RemoveObject, "~/remove_object", self._on_remove_object, callback_group=requests_group),
            self.create_timer(p.diagnostics_period_s, self._publish_diagnostics),
        ]
        accept = {"goal_callback": lambda _goal: GoalResponse.ACCEPT,
                  "cancel_callback": lambda _goal: CancelResponse.ACCEPT, "callback_group": requests_group}
        self._actions = [
            ActionServer(self, Ask, "~/ask", execute_callback=self._execute_ask, **accept),
            ActionServer(self, Track, "~/track", execute_callback=self._execute_track, **accept),
            ActionServer(self, VideoQuery, "~/video_query", execute_callback=self._execute_video_query, **accept),
        ]
        for loop in self.tracking_loops.values():
            loop.start()
        self.get_logger().info(f"configured: cameras {p.cameras}, profile {p.profile!r}, transport {p.transport}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        p = self.params
        profile = load_profile(p.profile, p.config_file or None)
        if p.precision:
            profile = dataclasses.replace(profile, llm=dataclasses.replace(profile.llm, dtype=p.precision))
        try:
            self.handlers.load(profile, p.device, progress=self.get_logger().info)
        except Exception as error:  # noqa: BLE001 - a model that fails to load fails activation, with the reason
            self.get_logger().error(f"activate failed: cannot load profile {p.profile!r}: {describe_error(error)}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"models of profile {p.profile!r} loaded on {p.device}")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.handlers.unload()
        self.get_logger().info("models freed")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._destroy()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self.handlers is not None:
            self.handlers.unload()
        self._destroy()
        return TransitionCallbackReturn.SUCCESS

    def _destroy(self) -> None:
        for worker in self.workers.values():
            worker.shutdown(wait=False)
        for loop in self.tracking_loops.values():
            loop.stop()
        for entity in self._created:
            if hasattr(entity, "cancel"):  # timers
                self.destroy_timer(entity)
            elif hasattr(entity, "srv_type"):
                self.destroy_service(entity)
            else:
                self.destroy_subscription(entity)
        for publisher in [*self._outputs.values(), self._diagnostics]:
            if publisher is not None:
                self.destroy_publisher(publisher)
        self._diagnostics = None
        for action in getattr(self, "_actions", []):
            action.destroy()
        self._actions = []
        self._created, self._outputs, self.workers, self.tracking_loops = [], {}, {}, {}

    def _parameter_values(self) -> dict:
        values = {}
        for name in NodeParameters.descriptions():
            try:
                values[name] = self.get_parameter(name).value
            except ParameterUninitializedException:
                continue  # an unset string array keeps its default
        return values

    # -- requests -----------------------------------------------------------------------------------------------
    def _run_on_camera(self, camera: str, fn, *args):
        """Run `fn` on the camera's worker; a busy camera or unknown camera gives an error string instead."""
        name = camera or next(iter(self.workers))
        worker = self.workers.get(name)
        if worker is None:
            return None, f"unknown camera {name!r}; cameras: {', '.join(self.workers)}"
        try:
            return worker.submit(fn, *args).result(), ""
        except CameraBusyError as error:
            return None, str(error)

    def _publish(self, outcome: QueryOutcome) -> None:
        if outcome.outputs is None:
            return
        for topic, (_, msg) in outcome.outputs.by_topic().items():
            self._outputs[topic].publish(msg)
        self.latency.add(outcome.timings)

    def _answer_or_error(self, req, progress=None) -> Answer:
        outcome, error = self._run_on_camera(req.camera, self.handlers.query_from_request, req, progress)
        if outcome is None:
            return self._error_answer(req.request, req.request_id, error)
        self._publish(outcome)
        return outcome.answer

    def _error_answer(self, request: str, request_id: str, error: str) -> Answer:
        answer = Answer(request=request, request_id=request_id, error=error)
        answer.header.stamp = self.get_clock().now().to_msg()
        return answer

    def _on_query(self, request: Query.Request, response: Query.Response) -> Query.Response:
        response.answer = self._answer_or_error(request)
        return response

    def _on_segment(self, request: Segment.Request, response: Segment.Response) -> Segment.Response:
        outcome, error = self._run_on_camera(request.camera, self.handlers.segment_from_request, request)
        if outcome is None:
            response.error = error
            return response
        response.masks, response.error = outcome.masks, outcome.error
        if outcome.masks.masks:
            self._outputs["masks"].publish(outcome.masks)
        return response

    def _on_topic_query(self, msg: String) -> None:
        """~/query (std_msgs/String): answer about the first camera's latest frame and publish the results."""
        camera = next(iter(self.workers))
        try:
            future = self.workers[camera].submit(self.handlers.query, msg.data, camera)
        except CameraBusyError as error:
            self.get_logger().warning(str(error))
            return
        future.add_done_callback(lambda f: self._publish_topic_answer(f.result(), msg.data))

    def _publish_topic_answer(self, outcome: QueryOutcome, request: str) -> None:
        if outcome.outputs is None:
            self.get_logger().warning(f"query {request!r} not answered: {outcome.answer.error}")
            self._outputs["answer"].publish(outcome.answer)
            return
        self._publish(outcome)

    def _execute_ask(self, goal_handle):
        """Ask.action: stream stages and partial text as feedback; a cancel request stops generation."""
        feedback = Ask.Feedback(stage="queued")
        goal_handle.publish_feedback(feedback)

        def progress(stage: str, text: str) -> None:
            if goal_handle.is_cancel_requested:
                raise QueryCancelled("goal cancelled")
            goal_handle.publish_feedback(Ask.Feedback(stage=stage, partial_text=text))

        answer = self._answer_or_error(goal_handle.request, progress)
        self._end_goal(goal_handle, answer)
        return Ask.Result(answer=answer)

    @staticmethod
    def _end_goal(goal_handle, answer: Answer) -> None:
        """An answering goal ends cancelled (on request), aborted (with answer.error) or succeeded."""
        if goal_handle.is_cancel_requested and answer.error == "cancelled":
            goal_handle.canceled()
        elif answer.error:
            goal_handle.abort()
        else:
            goal_handle.succeed()

    def _publish_tracks(self, step: TrackStep) -> None:
        """Called by a camera's tracking thread for every frame it tracked."""
        if "tracks" in self._outputs:
            self._outputs["tracks"].publish(step.tracks_msg)
        if step.overlay_msg is not None and "tracks_overlay" in self._outputs:
            self._outputs["tracks_overlay"].publish(step.overlay_msg)

    def _on_add_objects(self, request: AddObjects.Request, response: AddObjects.Response) -> AddObjects.Response:
        for name, value in self.handlers.add_objects(request).items():
            setattr(response, name, value)
        return response

    def _on_remove_object(self, request: RemoveObject.Request, response: RemoveObject.Response) -> RemoveObject.Response:
        for name, value in self.handlers.remove_object(request).items():
            setattr(response, name, value)
        return response

    def _execute_track(self, goal_handle):
        """Track.action: the object is added, fed back frame by frame, summarised and removed; cancel stops it."""
        try:
            tracking = self.handlers.tracking_for(goal_handle.request.camera)
        except Exception as error:  # noqa: BLE001 - no tracker, unknown camera: the goal aborts with the reason
            goal_handle.abort()
            return Track.Result(error=describe_error(error))
        result, outcome = run_track_goal(
            tracking, goal_handle.request, self.factory, lambda: goal_handle.is_cancel_requested,
            goal_handle.publish_feedback,
        )  # fmt: skip
        {"succeeded": goal_handle.succeed, "canceled": goal_handle.canceled, "aborted": goal_handle.abort}[outcome]()
        return result

    def _execute_video_query(self, goal_handle):
        """VideoQuery.action: the camera's recent frames as a clip; stages and partial text as feedback."""
        goal = goal_handle.request
        goal_handle.publish_feedback(VideoQuery.Feedback(stage="queued"))

        def progress(stage: str, text: str) -> None:
            if goal_handle.is_cancel_requested:
                raise QueryCancelled("goal cancelled")
            goal_handle.publish_feedback(VideoQuery.Feedback(stage=stage, partial_text=text))

        outcome, error = self._run_on_camera(
            goal.camera, self.handlers.video_query, goal.request, goal.camera, goal.num_frames, goal.request_id, progress
        )
        if outcome is None:
            goal_handle.abort()
            return VideoQuery.Result(answer=self._error_answer(goal.request, goal.request_id, error))
        if outcome.outputs is not None:
            for topic, (_, msg) in outcome.outputs.by_topic().items():
                self._outputs[topic].publish(msg)
        self._end_goal(goal_handle, outcome.answer)
        return VideoQuery.Result(answer=outcome.answer, clip_tracks=outcome.clip_tracks, clip_frames=outcome.clip_frames)

    def _publish_diagnostics(self) -> None:
        header = self.factory.new("std_msgs/msg/Header")
        header.stamp = self.get_clock().now().to_msg()
        pipeline = self.handlers.pipeline if self.handlers is not None else None
        cameras = {name: frames.stats() for name, frames in self.handlers.cameras.items()}
        refused = {name: worker.refused for name, worker in self.workers.items()}
        infos = {}
        for name, frames in self.handlers.cameras.items():
            latest, info = frames.latest(), self.camera_infos.get(name)
            infos[name] = camera_info_summary(info, latest.rgb.shape[:2] if latest is not None else None)
        self._diagnostics.publish(
            diagnostics_msg(
                self.factory, header, self.get_name(), cameras, self.latency.summary(),
                model_memory_bytes(pipeline), pipeline is not None, refused, infos,
            )
        )  # fmt: skip


def main(args=None) -> None:
    rclpy.init(args=args)
    node = VitronNode()
    # Services and the action wait on camera workers; enough threads keep frames flowing meanwhile.
    executor = MultiThreadedExecutor(num_threads=8)
    executor.add_node(node)
    if node.get_parameter("autostart").value:
        threading.Thread(target=_autostart, args=(node,), daemon=True).start()
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _autostart(node: VitronNode) -> None:
    if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
        node.trigger_activate()


if __name__ == "__main__":
    main()
