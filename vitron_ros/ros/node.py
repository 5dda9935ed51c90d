"""vitron_node: a lifecycle node serving VITRON on live camera streams.

    configure  -> read parameters, create subscriptions, publishers, services and the Ask, Track and VideoQuery
                  actions, and one tracking thread per camera
    activate   -> load the models of `profile` on `device`
    deactivate -> free them (GPU cache included); services answer "models are not loaded" meanwhile
    cleanup    -> destroy what configure created

A thin layer: callbacks convert messages and hand work to `VitronHandlers` on a per-camera worker thread; model
work never runs in a subscription callback. Everything it calls is tested without ROS (test/test_ros_*.py), and
the node itself from a second process (test/test_node_e2e.py).

Nothing a callback does can end the process: every callback is contained (logged with its traceback, counted in
/diagnostics, answered with an error where it has a reply), `ContainedExecutor` contains what rclpy raises around
them, a failed transition is logged with its cause and can be retried, and entities are destroyed on the spin thread
after the requests using them have drained.
"""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import CancelledError

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String
from vision_msgs.msg import Detection2DArray, Detection3DArray
from visualization_msgs.msg import MarkerArray
from vitron_ros_msgs.action import Ask, Edit, EditVideo, Track, VideoQuery
from vitron_ros_msgs.msg import Answer, GroundedMaskArray, TrackedObjectArray
from vitron_ros_msgs.srv import AddObjects, Query, RemoveObject, Segment

try:  # Iron and later
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks

from ..core.config import load_profile
from ..core.errors import QueryCancelled
from ..core.specialists import SPECIALISTS
from ..doctor import CheckResult, doctor_context, run_checks
from .depth import CameraDepth, DepthLifter
from .diagnostics import (
    LatencyWindow,
    NodeHealth,
    camera_info_summary,
    diagnostics_msg,
    runtime_status,
)
from .executor import ContainedExecutor
from .frame_buffer import CameraFrames
from .handlers import QueryOutcome, VitronHandlers, describe_error
from .interfaces import RclpyFactory, rclpy_type
from .parameters import NodeParameters, camera_info_topic
from .query_worker import CameraBusyError, QueryWorker
from .result_messages import output_topics
from .tracking import TrackStep, run_track_goal
from .tracking_loop import TrackingLoop
from .transforms import tf_lookup
from .video_editing import run_edit_video_goal

OUTPUT_TYPES = {"answer": Answer, "masks": GroundedMaskArray, "detections": Detection2DArray,
                "overlay": Image, "tracks": TrackedObjectArray, "tracks_overlay": Image}  # fmt: skip
# 3D, with depth_topics: answers' and tracks' detections and markers; in target_frame too where it is set
OUTPUTS_3D = {"detections_3d": Detection3DArray, "markers": MarkerArray, "tracks_3d": Detection3DArray,
              "tracks_markers": MarkerArray}
OUTPUTS_TARGET = {"detections_3d_target": Detection3DArray, "tracks_3d_target": Detection3DArray}
# plus what the registry's other output kinds publish: ~/edited, ~/generated and ~/generated_video
# (vitron_ros_msgs/SyntheticImage)
OUTPUT_TYPES.update({topic: rclpy_type(kind) for topic, kind in output_topics().items()})
# a generated clip is published frame by frame at once: its topic's queue holds a whole clip (up to 64 frames)
OUTPUT_DEPTH = {entry.topic: 64 for entry in SPECIALISTS.values() if entry.output == "videos"}
# Services keep a deeper request queue than rclpy's default of 10: a burst of requests from several clients is
# queued and answered (busy cameras answer at once with the reason), never silently dropped by DDS.
SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
DRAIN_TIMEOUT_S = 30.0  # how long cleanup waits for running requests before it destroys their entities


class VitronNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("vitron", **kwargs)
        self.factory = RclpyFactory()
        for name, description in NodeParameters.descriptions().items():
            default = getattr(NodeParameters(), name)
            descriptor = ParameterDescriptor(description=description)
            # An empty list says nothing about its element type; declare string arrays by type.
            self.declare_parameter(name, Parameter.Type.STRING_ARRAY if default == [] else default, descriptor)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.params: NodeParameters | None = None
        self.handlers: VitronHandlers | None = None
        self.workers: dict[str, QueryWorker] = {}
        self.tracking_loops: dict[str, TrackingLoop] = {}
        self.latency = LatencyWindow()
        self.health = NodeHealth()
        self.camera_infos: dict[str, CameraInfo] = {}
        self.environment: list[CheckResult] = []  # the doctor's checks at configure, in /diagnostics
        # Not rclpy's own _publishers / _subscriptions lists: these are what configure created, for cleanup.
        self._created = []
        self._actions = []
        self._outputs = {}
        self._diagnostics = None
        self._entities = threading.RLock()  # publishing threads vs destruction
        self._closing = threading.Event()  # cleanup or shutdown under way: new requests are refused
        self._goals_end = threading.Event()  # deactivate, cleanup or shutdown under way: running goals end
        self._inflight = 0
        self._drained = threading.Condition()

    # -- lifecycle ----------------------------------------------------------------------------------------------
    # rclpy swallows what a transition callback raises; each one here logs the cause and fails cleanly instead.
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self.params = NodeParameters.from_dict(self._parameter_values())
            load_profile(self.params.profile, self.params.config_file or None)  # fail now on an unknown profile
        except Exception as error:  # noqa: BLE001 - a bad parameter fails the transition with its message
            self.get_logger().error(f"configure failed: {describe_error(error)}")
            return TransitionCallbackReturn.FAILURE
        self.environment = self._check_environment(self.params)
        try:
            self._configure(self.params)
        except Exception as error:  # noqa: BLE001 - undo what was created, so configure can be retried
            self._transition_failed("configure", error)
            self._destroy()
            return TransitionCallbackReturn.FAILURE
        p = self.params
        self.get_logger().info(f"configured: cameras {p.cameras}, profile {p.profile!r}, transport {p.transport}")
        return TransitionCallbackReturn.SUCCESS

    def _check_environment(self, p: NodeParameters) -> list[CheckResult]:
        """`vitron doctor`'s checks for this node's profile and device (checkpoint files not hashed: minutes for
        multi-GB files); what fails or warns is logged with its fix and stays in /diagnostics."""
        context = doctor_context(p.profile, p.config_file or None, p.device, hash_files=False)
        results = run_checks(context)
        for r in results:
            if r.status != "ok":
                log = self.get_logger().error if r.status == "fail" else self.get_logger().warning
                log(f"environment: {r.check}: {r.detail} (fix: {r.fix})")
        return results

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        p = self.params
        try:
            profile = load_profile(p.profile, p.config_file or None)
            profile = p.apply_to(profile)
            self.handlers.load(profile, p.device, progress=self.get_logger().info)
        except Exception as error:  # noqa: BLE001 - a model that fails to load fails activation, with the reason
            self.get_logger().error(f"activate failed: cannot load profile {p.profile!r}: {describe_error(error)}")
            self.get_logger().debug(traceback.format_exc())
            return TransitionCallbackReturn.FAILURE
        self._goals_end.clear()
        self.get_logger().info(f"models of profile {p.profile!r} loaded on {p.device}")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        try:
            self._end_running_goals()
            self.handlers.unload()
        except Exception as error:  # noqa: BLE001
            self._transition_failed("deactivate", error)
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info("models freed")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        return self._tear_down("cleanup", unload=False)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        return self._tear_down("shutdown", unload=True)

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error(f"error processing from state {state.label!r}: freeing everything; configure again")
        return self._tear_down("error processing", unload=True)

    def _tear_down(self, transition: str, unload: bool) -> TransitionCallbackReturn:
        try:
            if unload and self.handlers is not None:
                self.handlers.unload()
            self._destroy()
        except Exception as error:  # noqa: BLE001
            self._transition_failed(transition, error)
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def _transition_failed(self, transition: str, error: BaseException) -> None:
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.get_logger().error(f"{transition} failed: {describe_error(error)}\n{trace}")
        self.health.callback_failed(f"{transition}: {describe_error(error)}")

    def _configure(self, p: NodeParameters) -> None:
        self._closing.clear()
        self._goals_end.clear()
        cameras = {name: CameraFrames(name, p.clip_length, p.max_rate_hz) for name in p.cameras}
        # the depth ring covers the colour ring (a VideoQuery lifts its clip's first frame) and a second at 30 Hz
        depth = {name: CameraDepth(topic, p.depth_stamp_tolerance_s, history=max(30, p.clip_length + 4))
                 for name, topic in p.camera_depth_topics.items()}
        lifter = None
        if depth:
            transforms, missing = (None, "")
            if p.target_frame:
                transforms, missing = tf_lookup(self)
                if missing:
                    self.get_logger().warning(f"target_frame {p.target_frame!r}: {missing}")
            lifter = DepthLifter(depth, p.depth_wait_s, target_frame=p.target_frame, transforms=transforms,
                                 transforms_missing=missing)
        self.handlers = VitronHandlers(self.factory, cameras, overlay=p.overlay, video_frames=p.video_frames,
                                       run_in_background=self._run_in_background,
                                       cropped_masks=p.mask_format == "cropped", lifter=lifter)
        self.workers = {name: QueryWorker(name, p.max_pending_queries) for name in cameras}
        self.tracking_loops = {
            name: TrackingLoop(frames, lambda n=name: self.handlers.tracking.get(n), self._publish_tracks,
                               self._tracking_failed)
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
            frames, loop = cameras[name], self.tracking_loops[name]
            msg_type, topic_name = (CompressedImage, f"{topic}/compressed") if p.transport == "compressed" else (Image, topic)
            add = frames.add_compressed if p.transport == "compressed" else frames.add_image
            self._created.append(self.create_subscription(
                msg_type, topic_name, self._contained(f"frame on {topic_name}", lambda msg, a=add, t=loop: a(msg) and t.wake()),
                qos, callback_group=frames_group, event_callbacks=self._qos_events(topic_name, SubscriptionEventCallbacks),
            ))  # fmt: skip
            if p.camera_info:
                info_topic = camera_info_topic(topic)
                self._created.append(self.create_subscription(
                    CameraInfo, info_topic, self._contained(f"camera_info on {info_topic}",
                                                            lambda msg, n=name: self._on_camera_info(n, msg)),
                    qos, callback_group=frames_group, event_callbacks=self._qos_events(info_topic, SubscriptionEventCallbacks),
                ))  # fmt: skip
            if name in depth:  # its own callback group: a depth frame is never stuck behind a colour frame's decode
                depth_topic, depth_info = depth[name].topic, camera_info_topic(depth[name].topic)
                depth_group = MutuallyExclusiveCallbackGroup()
                self._created += [
                    self.create_subscription(
                        Image, depth_topic, self._contained(f"depth on {depth_topic}", depth[name].add_depth), qos,
                        callback_group=depth_group, event_callbacks=self._qos_events(depth_topic, SubscriptionEventCallbacks)),
                    self.create_subscription(
                        CameraInfo, depth_info, self._contained(f"camera_info on {depth_info}", depth[name].add_info),
                        qos, callback_group=depth_group),
                ]  # fmt: skip
        with self._entities:
            outputs = {**OUTPUT_TYPES, **(OUTPUTS_3D if depth else {}),
                       **(OUTPUTS_TARGET if depth and p.target_frame else {})}
            for topic, msg_type in outputs.items():
                if topic in ("overlay", "tracks_overlay") and not p.overlay:
                    continue
                self._outputs[topic] = self.create_lifecycle_publisher(
                    msg_type, f"~/{topic}", OUTPUT_DEPTH.get(topic, 10), event_callbacks=self._qos_events(f"~/{topic}", PublisherEventCallbacks)
                )
            self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._created += [
            self.create_subscription(String, "~/query", self._contained("~/query", self._on_topic_query), 10,
                                     callback_group=requests_group),
            self.create_service(Query, "~/query", self._service("Query", self._on_query, _query_failed),
                                callback_group=requests_group, qos_profile=SERVICE_QOS),
            self.create_service(Segment, "~/segment", self._service("Segment", self._on_segment, _segment_failed),
                                callback_group=requests_group, qos_profile=SERVICE_QOS),
            self.create_service(AddObjects, "~/add_objects",
                                self._service("AddObjects", self._on_add_objects, _listing_failed),
                                callback_group=requests_group, qos_profile=SERVICE_QOS),
            self.create_service(RemoveObject, "~/remove_object",
                                self._service("RemoveObject", self._on_remove_object, _listing_failed),
                                callback_group=requests_group, qos_profile=SERVICE_QOS),
            # its own group: it reports "loading models: ..." while a lifecycle transition (another callback) loads
            self.create_timer(p.diagnostics_period_s, self._contained("diagnostics", self._publish_diagnostics),
                              callback_group=MutuallyExclusiveCallbackGroup()),
        ]
        accept = {"goal_callback": lambda _goal: GoalResponse.ACCEPT,
                  "cancel_callback": lambda _goal: CancelResponse.ACCEPT, "callback_group": requests_group}
        self._actions = [
            ActionServer(self, Ask, "~/ask", execute_callback=self._goal("Ask", self._execute_ask, Ask.Result),
                         **accept),
            ActionServer(self, Track, "~/track",
                         execute_callback=self._goal("Track", self._execute_track, Track.Result), **accept),
            ActionServer(self, Edit, "~/edit", execute_callback=self._goal("Edit", self._execute_edit, Edit.Result),
                         **accept),
            ActionServer(self, EditVideo, "~/edit_video",
                         execute_callback=self._goal("EditVideo", self._execute_edit_video, EditVideo.Result),
                         **accept),
            ActionServer(self, VideoQuery, "~/video_query",
                         execute_callback=self._goal("VideoQuery", self._execute_video_query, VideoQuery.Result),
                         **accept),
        ]
        for loop in self.tracking_loops.values():
            loop.start()

    def _destroy(self) -> None:
        """Stop the threads, let running requests drain, then destroy every entity on the executor's spin thread."""
        self._closing.set()
        lifter = self.handlers.lifter if self.handlers is not None else None
        if lifter is not None and hasattr(lifter.transforms, "close"):
            lifter.transforms.close()  # the TF listener's subscriptions
        for worker in self.workers.values():
            worker.shutdown(wait=False)
        for loop in self.tracking_loops.values():
            loop.stop()
        self._end_running_goals()
        with self._entities:
            created, actions = self._created, self._actions
            publishers = [*self._outputs.values(), self._diagnostics]
            self._created, self._actions, self._outputs, self._diagnostics = [], [], {}, None
        self.workers, self.tracking_loops = {}, {}

        lifecycle_publishers, diagnostics = publishers[:-1], publishers[-1]

        def destroy() -> None:
            for entity in created:
                if hasattr(entity, "timer_period_ns"):
                    self.destroy_timer(entity)
                elif hasattr(entity, "srv_type"):
                    self.destroy_service(entity)
                else:
                    self.destroy_subscription(entity)
            for action in actions:
                action.destroy()
            destroy_lifecycle = getattr(self, "destroy_lifecycle_publisher", self.destroy_publisher)  # Humble: none
            for publisher in lifecycle_publishers:
                destroy_lifecycle(publisher)
            if diagnostics is not None:
                self.destroy_publisher(diagnostics)

        executor = self.executor
        if isinstance(executor, ContainedExecutor):
            executor.call_on_spin_thread(destroy).result(timeout=DRAIN_TIMEOUT_S)
        else:  # a single-threaded executor runs this on its spin thread already
            destroy()

    def _end_running_goals(self) -> None:
        """Deactivation and cleanup: running goals end (aborted, with the reason) and requests finish, up to
        DRAIN_TIMEOUT_S, before models are freed or entities destroyed."""
        self._goals_end.set()
        with self._drained:
            if not self._drained.wait_for(lambda: self._inflight == 0, timeout=DRAIN_TIMEOUT_S):
                self.get_logger().warning(f"{self._inflight} request(s) still running after {DRAIN_TIMEOUT_S:.0f} s; "
                                          "going on without them")

    def _parameter_values(self) -> dict:
        values = {}
        for name in NodeParameters.descriptions():
            try:
                values[name] = self.get_parameter(name).value
            except ParameterUninitializedException:
                continue  # an unset string array keeps its default
        return values

    def _check_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Refuse a value NodeParameters would refuse, with its reason; accepted values apply at the next configure."""
        values = self._parameter_values()
        values.update({p.name: p.value for p in parameters if p.name in values or p.name in NodeParameters.descriptions()})
        try:
            NodeParameters.from_dict(values)
        except Exception as error:  # noqa: BLE001 - the reason goes back to the caller
            return SetParametersResult(successful=False, reason=describe_error(error))
        return SetParametersResult(successful=True)

    # -- containment --------------------------------------------------------------------------------------------
    def _enter(self) -> bool:
        with self._drained:
            if self._closing.is_set():
                return False
            self._inflight += 1
            return True

    def _leave(self) -> None:
        with self._drained:
            self._inflight -= 1
            self._drained.notify_all()

    def _contained(self, what: str, fn: Callable) -> Callable:
        """A topic or timer callback that logs and counts what it raises instead of ending the node."""

        def callback(*args):
            try:
                return fn(*args)
            except Exception as error:  # noqa: BLE001
                self._callback_failed(what, error)
                return None

        return callback

    def _service(self, what: str, fn: Callable, failed: Callable) -> Callable:
        """A service callback: counted while it runs (cleanup waits for it); an exception becomes the reply's error."""

        def callback(request, response):
            if not self._enter():
                return failed(response, "the node is shutting down its interfaces (cleanup)")
            try:
                return fn(request, response)
            except Exception as error:  # noqa: BLE001
                self._callback_failed(what, error)
                return failed(response, f"internal error, logged by the node: {describe_error(error)}")
            finally:
                self._leave()

        return callback

    def _goal(self, what: str, fn: Callable, result_type) -> Callable:
        """An action's execute callback: counted while it runs; an exception aborts the goal with the reason."""

        def callback(goal_handle):
            if not self._enter():
                goal_handle.abort()
                return _error_result(result_type, "the node is shutting down its interfaces (cleanup)")
            try:
                return fn(goal_handle)
            except Exception as error:  # noqa: BLE001
                self._callback_failed(what, error)
                if goal_handle.is_active:
                    goal_handle.abort()
                return _error_result(result_type, f"internal error, logged by the node: {describe_error(error)}")
            finally:
                self._leave()

        return callback

    def _callback_failed(self, what: str, error: BaseException) -> None:
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.get_logger().error(f"{what} raised {describe_error(error)}; the node keeps serving\n{trace}")
        self.health.callback_failed(f"{what}: {describe_error(error)}")

    def _tracking_failed(self, message: str) -> None:
        self.get_logger().error(message)
        self.health.callback_failed(message)

    def _qos_events(self, topic: str, kind):
        def incompatible(event) -> None:
            side = "publisher" if kind is PublisherEventCallbacks else "subscription"
            other = "subscriber" if side == "publisher" else "publisher"
            policy = getattr(event.last_policy_kind, "name", str(event.last_policy_kind))
            hint = " (set the `reliability` parameter to what the camera offers)" if side == "subscription" else ""
            message = (f"incompatible QoS on {topic}: a {other} cannot be matched with this {side} "
                       f"(policy {policy}, {event.total_count} so far); no messages flow between them{hint}")
            self.get_logger().warning(message)
            self.health.qos_incompatible(topic, message)

        return kind(incompatible_qos=incompatible)

    def _publish_output(self, topic: str, msg) -> None:
        with self._entities:
            publisher = self._outputs.get(topic)
            if publisher is not None:
                publisher.publish(msg)

    def _run_in_background(self, camera: str, job: Callable[[], None]) -> None:
        """Work handed down by the tracking threads (groundings) runs on the camera's query worker."""
        worker = self.workers.get(camera)
        if worker is None or self._closing.is_set():
            raise CameraBusyError(f"camera {camera!r} is not serving (the node is not active)")
        worker.submit(job)

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
        except CancelledError:  # queued when cleanup stopped the worker
            return None, "the node is cleaning up: the request was cancelled before it ran"

    def _publish(self, outcome: QueryOutcome) -> None:
        if outcome.outputs is None:
            return
        for topic, _, msg in outcome.outputs.messages():
            self._publish_output(topic, msg)
        self.latency.add(outcome.timings)

    def _answer_or_error(self, req, progress=None) -> Answer:
        outcome, error = self._run_on_camera(req.camera, self.handlers.query_from_request, req, progress)
        if outcome is None:
            answer = self._error_answer(req.request, req.request_id, error)
        else:
            self._publish(outcome)
            answer = outcome.answer
        if answer.error:
            self.health.request_failed("query", answer.error)
        return answer

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
        else:
            response.masks, response.error = outcome.masks, outcome.error
            if outcome.masks.masks:
                self._publish_output("masks", outcome.masks)
        if response.error:
            self.health.request_failed("segment", response.error)
        return response

    def _on_topic_query(self, msg: String) -> None:
        """~/query (std_msgs/String): answer about the first camera's latest frame and publish the results."""
        camera = next(iter(self.workers), None)
        if camera is None or self._closing.is_set():
            return
        try:
            future = self.workers[camera].submit(self.handlers.query, msg.data, camera)
        except CameraBusyError as error:
            self.get_logger().warning(str(error))
            self.health.request_failed("query", str(error))
            return
        future.add_done_callback(
            self._contained("~/query answer", lambda f: f.cancelled() or self._publish_topic_answer(f.result(), msg.data))
        )

    def _publish_topic_answer(self, outcome: QueryOutcome, request: str) -> None:
        if outcome.outputs is None:
            self.get_logger().warning(f"query {request[:200]!r} not answered: {outcome.answer.error}")
            self.health.request_failed("query", outcome.answer.error)
            self._publish_output("answer", outcome.answer)
            return
        self._publish(outcome)

    def _execute_ask(self, goal_handle):
        """Ask.action: stream stages and partial text as feedback; a cancel request stops generation."""
        goal_handle.publish_feedback(Ask.Feedback(stage="queued"))
        progress = self._goal_progress(goal_handle, lambda stage, text: Ask.Feedback(stage=stage, partial_text=text))
        answer = self._answer_or_error(goal_handle.request, progress)
        self._end_goal(goal_handle, answer)
        return Ask.Result(answer=answer)

    def _execute_edit(self, goal_handle):
        """Edit.action: stages, then every denoising step, as feedback; a cancel stops the denoising loop."""
        goal = goal_handle.request
        goal_handle.publish_feedback(Edit.Feedback(stage="queued"))

        def feedback(stage: str, text: str) -> Edit.Feedback:
            step, _, steps = text.partition("/") if stage == "denoise" else ("0", "", "0")  # "k/n" per step
            return Edit.Feedback(stage=stage, step=int(step or 0), steps=int(steps or 0))

        progress = self._goal_progress(goal_handle, feedback)
        outcome, error = self._run_on_camera(goal.camera, self.handlers.edit_from_request, goal, progress)
        if outcome is None:
            answer = self._error_answer(goal.request, goal.request_id, error)
            images = []
        else:
            self._publish(outcome)
            answer = outcome.answer
            images = outcome.outputs.synthetic_images() if outcome.outputs is not None else []
        if answer.error:
            self.health.request_failed("edit", answer.error)
        self._end_goal(goal_handle, answer)
        return Edit.Result(answer=answer, images=images)

    def _execute_edit_video(self, goal_handle):
        """EditVideo.action: feedback per frame, each edited frame on ~/edited; cancel stops between frames and
        inside the denoising loop. Runs on the action's thread (not the camera's query worker: it may edit for
        minutes); the pipeline's locks make it take turns with queries on the LLM and the editor."""
        result, outcome = run_edit_video_goal(
            self.handlers, goal_handle.request, self.factory, lambda: self._goal_stopped(goal_handle),
            goal_handle.publish_feedback, lambda msg: self._publish_output("edited", msg),
        )  # fmt: skip
        if outcome == "canceled" and not goal_handle.is_cancel_requested:
            result.answer.error = result.answer.error or "the node was deactivated or cleaned up while the goal ran"
            outcome = "aborted"
        if result.answer.error and outcome != "canceled":
            self.health.request_failed("edit_video", result.answer.error)
        {"succeeded": goal_handle.succeed, "canceled": goal_handle.canceled, "aborted": goal_handle.abort}[outcome]()
        return result

    def _goal_stopped(self, goal_handle) -> bool:
        """A cancel was requested, or the node is deactivating or cleaning up."""
        return goal_handle.is_cancel_requested or self._goals_end.is_set()

    def _goal_progress(self, goal_handle, feedback):
        """The pipeline's progress(stage, text) for a goal: publishes feedback(stage, text), or raises QueryCancelled
        (which stops the query between tokens or denoising steps) once the goal is stopped."""

        def progress(stage: str, text: str) -> None:
            if self._goal_stopped(goal_handle):
                raise QueryCancelled("goal cancelled")
            goal_handle.publish_feedback(feedback(stage, text))

        return progress

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
        for topic, _, msg in step.messages():
            self._publish_output(topic, msg)

    def _on_camera_info(self, camera: str, msg: CameraInfo) -> None:
        self.camera_infos[camera] = msg
        lifter = self.handlers.lifter if self.handlers is not None else None
        if lifter is not None and camera in lifter.depth:  # aligned depth shares the colour camera's intrinsics
            lifter.depth[camera].add_info(msg, colour=True)

    def _on_add_objects(self, request: AddObjects.Request, response: AddObjects.Response) -> AddObjects.Response:
        for name, value in self.handlers.add_objects(request).items():
            setattr(response, name, value)
        if not response.success:
            self.health.request_failed("add_objects", response.message)
        return response

    def _on_remove_object(self, request: RemoveObject.Request, response: RemoveObject.Response) -> RemoveObject.Response:
        for name, value in self.handlers.remove_object(request).items():
            setattr(response, name, value)
        if not response.success:
            self.health.request_failed("remove_object", response.message)
        return response

    def _execute_track(self, goal_handle):
        """Track.action: the object is added, fed back frame by frame, summarised and removed; cancel stops it."""
        try:
            tracking = self.handlers.tracking_for(goal_handle.request.camera)
        except Exception as error:  # noqa: BLE001 - no tracker, unknown camera: the goal aborts with the reason
            goal_handle.abort()
            self.health.request_failed("track", describe_error(error))
            return Track.Result(error=describe_error(error))
        result, outcome = run_track_goal(
            tracking, goal_handle.request, self.factory,
            lambda: self._goal_stopped(goal_handle), goal_handle.publish_feedback,
        )  # fmt: skip
        if outcome == "canceled" and not goal_handle.is_cancel_requested:
            result.error = "the node was deactivated or cleaned up while the goal ran"
            outcome = "aborted"
        if result.error:
            self.health.request_failed("track", result.error)
        {"succeeded": goal_handle.succeed, "canceled": goal_handle.canceled, "aborted": goal_handle.abort}[outcome]()
        return result

    def _execute_video_query(self, goal_handle):
        """VideoQuery.action: the camera's recent frames as a clip; stages and partial text as feedback."""
        goal = goal_handle.request
        goal_handle.publish_feedback(VideoQuery.Feedback(stage="queued"))
        progress = self._goal_progress(
            goal_handle, lambda stage, text: VideoQuery.Feedback(stage=stage, partial_text=text)
        )

        outcome, error = self._run_on_camera(
            goal.camera, self.handlers.video_query, goal.request, goal.camera, goal.num_frames, goal.request_id, progress
        )
        if outcome is None:
            goal_handle.abort()
            self.health.request_failed("video_query", error)
            return VideoQuery.Result(answer=self._error_answer(goal.request, goal.request_id, error))
        if outcome.outputs is not None:
            for topic, _, msg in outcome.outputs.messages():
                self._publish_output(topic, msg)
        if outcome.answer.error:
            self.health.request_failed("video_query", outcome.answer.error)
        self._end_goal(goal_handle, outcome.answer)
        return VideoQuery.Result(answer=outcome.answer, clip_tracks=outcome.clip_tracks, clip_frames=outcome.clip_frames)

    def _publish_diagnostics(self) -> None:
        handlers = self.handlers
        if handlers is None:
            return
        header = self.factory.new("std_msgs/msg/Header")
        header.stamp = self.get_clock().now().to_msg()
        pipeline = handlers.pipeline
        cameras = {name: frames.stats() for name, frames in handlers.cameras.items()}
        refused = {name: worker.refused for name, worker in self.workers.items()}
        infos = {}
        for name, frames in handlers.cameras.items():
            latest, info = frames.latest(), self.camera_infos.get(name)
            infos[name] = camera_info_summary(info, latest.rgb.shape[:2] if latest is not None else None)
        executor = self.executor
        contained = executor.errors if isinstance(executor, ContainedExecutor) else 0
        msg = diagnostics_msg(
            self.factory, header, self.get_name(), cameras, self.latency.summary(),
            runtime_status(pipeline, handlers.loading), pipeline is not None, refused, infos,
            self.health.snapshot(contained), {name: loop.stats() for name, loop in self.tracking_loops.items()},
            {name: handlers.lifter.status(name) for name in handlers.cameras} if handlers.lifter else None,
            self.environment,
        )  # fmt: skip
        with self._entities:
            if self._diagnostics is not None:
                self._diagnostics.publish(msg)


def _query_failed(response, error: str):
    response.answer = Answer(error=error)
    return response


def _segment_failed(response, error: str):
    response.error = error
    return response


def _listing_failed(response, error: str):
    response.success, response.message = False, error
    return response


def _error_result(result_type, error: str):
    result = result_type()
    if hasattr(result, "error"):
        result.error = error
    else:
        result.answer = Answer(error=error)
    return result


def main(args=None) -> None:
    # rclpy's own signal handler shuts the context down under running callbacks (a timer then fails to publish on
    # an invalid context); here SIGINT / SIGTERM only stop the spin loop, and everything is torn down in order.
    rclpy.init(args=args, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = VitronNode()
    # Services and the action wait on camera workers; enough threads keep frames flowing meanwhile.
    executor = ContainedExecutor(num_threads=8, on_error=node.get_logger().error)
    executor.add_node(node)
    if node.get_parameter("autostart").value:
        threading.Thread(target=_autostart, args=(node,), daemon=True).start()
    try:
        executor.spin_until(stop)
    finally:
        node.get_logger().info("stopping: shutting the node down")
        try:
            node.trigger_shutdown()  # lifecycle shutdown: models freed, threads stopped, entities destroyed
        except Exception as error:  # noqa: BLE001 - e.g. already finalized by a lifecycle manager; still clean up
            node.get_logger().info(f"no shutdown transition ({describe_error(error)}); destroying the node")
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def _autostart(node: VitronNode) -> None:
    if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
        node.trigger_activate()


if __name__ == "__main__":
    main()
