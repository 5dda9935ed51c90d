"""vitron_node on the glamm-tiny profile (GLaMM's own tiny model, converted), called from this process over real DDS:
Query and Ask with task='segmentation' answer a referring request with a mask from GLaMM's [SEG] path."""

from __future__ import annotations

import pytest

from test.ros_harness import NodeProcess, image_msg, scene, wait_future, wait_until
from test.test_node_e2e import _send_goal, _state, probe  # noqa: F401 - probe is the same module-scoped fixture


@pytest.fixture(scope="module")
def node(ros, glamm_tiny_profile, tmp_path_factory, probe):
    params = {"profile": "glamm-tiny", "device": "cpu", "autostart": True, "image_topics": ["glamm/image"],
              "reliability": "reliable"}
    process = NodeProcess(params, tmp_path_factory.mktemp("glamm_node") / "node.log")
    try:
        wait_until(lambda: _state(probe, "/vitron") == "active" or not process.alive(), 120, "the node to activate")
        assert process.alive(), process.log()
        yield process
    finally:
        code = process.stop()
        log = process.log()
        assert code == 0, f"vitron_node exited with {code}:\n{log[-3000:]}"
        assert "Traceback" not in log, log[-3000:]


def _own_image():
    return image_msg(scene(), "glamm_cam", 1_000_000_000)


def test_query_with_the_segmentation_task_returns_glamms_mask(node, probe):
    from vitron_ros_msgs.srv import Query

    request = Query.Request(request="Can you segment the red square in this image?", image=_own_image(),
                            task="segmentation", request_id="g1")
    answer = probe.call(Query, "/vitron/query", request, timeout_s=120).answer
    assert answer.error == "", answer.error
    assert "[SEG]" in answer.raw_reply and "<module>" not in answer.raw_reply
    grounded = [m for m in answer.masks if m.source != "user_prompt"]
    assert grounded and grounded[0].mask.height == 120 and grounded[0].mask.width == 200
    bad = probe.call(Query, "/vitron/query", Query.Request(request="x", image=_own_image(), task="painting")).answer
    assert "task 'painting'" in bad.error


def test_ask_with_the_segmentation_task_streams_and_returns_glamms_mask(node, probe):
    from vitron_ros_msgs.action import Ask

    feedback: list = []
    goal = Ask.Goal(request="Please segment the blue square.", image=_own_image(), task="segmentation", request_id="g2")
    handle = _send_goal(probe, Ask, "/vitron/ask", goal, feedback)
    result = wait_future(handle.get_result_async(), 120, "Ask result").result
    assert result.answer.error == "" and result.answer.request_id == "g2"
    assert any(m.source != "user_prompt" for m in result.answer.masks)
    assert "llm_generate" in [f.stage for f in feedback]
