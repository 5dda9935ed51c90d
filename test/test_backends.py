"""The runtime: encoder backends and their exports, the TensorRT engine cache, precision, the memory budget."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from vitron_ros.core.backends import BACKENDS, load_encoder
from vitron_ros.core.backends.tensorrt_backend import EngineCache, EngineKey, unavailable
from vitron_ros.core.config import RuntimeConfig, load_profile
from vitron_ros.core.errors import CheckpointLoadError, VitronInputError
from vitron_ros.core.specialists import Frame, SpecialistCall

EXPORTS = {"clip_vision", "sam_image_encoder", "sam_mask_decoder", "sam2_vision", "unet"}


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("engines"))


def _with_runtime(profile, **changes):
    return dataclasses.replace(profile, runtime=dataclasses.replace(profile.runtime, **changes))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "shapes"])
def test_every_export_runs_on_onnxruntime_like_pytorch(name, tiny_profile, engine_cache, capsys):
    """`vitron engines build`'s core on CPU: TensorRT is passed over visibly and each ONNX file matches PyTorch."""
    from vitron_ros.core.engines import build_engines

    profile = _with_runtime(load_profile(name), engine_cache=engine_cache)
    reports = build_engines(profile, "tensorrt", "cpu", progress=print)
    assert {r.name for r in reports} == EXPORTS
    for report in reports:
        print(report.line())
        assert report.ok and report.max_abs_diff <= 1e-3 * max(1.0, report.output_scale), report.line()
        assert report.backend.startswith("onnxruntime float32") and "tensorrt: needs a CUDA device" in report.backend
        assert not report.on_requested
    log = capsys.readouterr().out
    assert "backend tensorrt unavailable (needs a CUDA device); falling back" in log
    assert len(list(Path(engine_cache).glob("*.onnx"))) >= len(EXPORTS)


@pytest.mark.slow
def test_engines_build_command_checks_every_export_and_says_when_it_fell_back(tiny_profile, capsys):
    from vitron_ros.cli import main

    assert main(["engines", "build", "--profile", "tiny", "--device", "cpu", "--backend", "onnxruntime"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert sorted(line.split()[0] for line in lines) == sorted(EXPORTS)
    assert all(line.endswith(" ok") and "onnxruntime float32" in line for line in lines), lines
    assert main(["engines", "build", "--profile", "tiny", "--device", "cpu", "--backend", "tensorrt"]) == 1
    captured = capsys.readouterr()
    assert "tensorrt could not run every encoder here" in captured.err and "ok (fell back)" in captured.out


def test_dynamic_axes_of_the_exports_accept_other_sizes(tiny_pipeline, engine_cache):
    """Clip frames, prompt tokens and classifier-free-guidance batch vary at run time; the ONNX files follow."""
    import torch

    exportables = tiny_pipeline.exportables()
    runtime = RuntimeConfig(backend="onnxruntime", engine_cache=engine_cache)
    decoder, clip, unet = exportables["sam_mask_decoder"], exportables["clip_vision"], exportables["unet"]
    dim, h, w = decoder.example[0].shape[1:]
    cases = [
        (decoder, (torch.randn(1, dim, h, w), torch.randn(1, 1, dim), torch.randn(1, dim, h, w))),
        (clip, (torch.randn(5, *clip.example[0].shape[1:]),)),
        (unet, (torch.randn(1, *unet.example[0].shape[1:]), torch.tensor([3.0]),
                torch.randn(1, unet.example[2].shape[1] + 4, unet.example[2].shape[2]))),
    ]
    for exportable, inputs in cases:
        encoder = load_encoder(exportable, runtime, "cpu", progress=lambda m: None)
        with torch.inference_mode():
            reference = exportable.module(*inputs)
        reference = reference if isinstance(reference, tuple) else (reference,)
        for got, want in zip(encoder(*inputs), reference, strict=True):
            assert got.shape == want.shape
            assert float((got - want).abs().max()) <= 1e-3 * max(1.0, float(want.abs().max()))


def test_backend_choice_is_honoured_reported_and_gives_the_same_answer(tiny_profile, tiny_pipeline, engine_cache,
                                                                          scene):
    from vitron_ros.core.pipeline import VitronPipeline
    from vitron_ros.core.sketch import Sketch

    profile = _with_runtime(tiny_profile, backend="onnxruntime", engine_cache=engine_cache)
    ort = VitronPipeline.from_profile(profile, progress=lambda m: None)
    status = ort.runtime_status()
    for key in ("llm.clip_vision_backend", "segmenter.sam_image_encoder_backend", "tracker.sam2_vision_backend",
                "editor.unet_backend", "generator.unet_backend"):
        assert status[key] == "onnxruntime float32", (key, status[key])
    assert tiny_pipeline.runtime_status()["segmenter.sam_image_encoder_backend"] == "torch float32"
    sketches = [Sketch.point(60, 45), Sketch.box(115, 55, 185, 115)]
    reply = "it is <p>the thing</p> [SEG]."
    got = ort.ground_reply(scene, "what is it?", reply, sketches)
    want = tiny_pipeline.ground_reply(scene, "what is it?", reply, sketches)
    assert [m.label for m in got.masks] == [m.label for m in want.masks] and len(got.masks) >= 2
    for a, b in zip(got.masks, want.masks, strict=True):
        union = (a.mask | b.mask).sum()
        assert union == 0 or (a.mask & b.mask).sum() / union >= 0.98
    # everything mode runs SamPredictor, which calls the image encoder the backend replaced
    everything = ort.run_specialist("segmenter", Frame(scene), [SpecialistCall(task="everything")])
    assert not isinstance(everything[0], Exception) and len(everything[0].masks) > 0


def test_a_backend_that_cannot_run_falls_back_visibly_or_fails_naming_each(tiny_pipeline, engine_cache):
    exportable = tiny_pipeline.exportables()["sam_image_encoder"]
    messages: list[str] = []
    runtime = RuntimeConfig(backend="tensorrt", fallback=("onnxruntime", "torch"), engine_cache=engine_cache)
    encoder = load_encoder(exportable, runtime, "cpu", progress=messages.append)
    assert encoder.backend == "onnxruntime" and encoder.skipped == ["tensorrt: needs a CUDA device"]
    assert encoder.describe() == "onnxruntime float32 (passed over: tensorrt: needs a CUDA device)"
    assert any("backend tensorrt unavailable" in m for m in messages)
    with pytest.raises(CheckpointLoadError, match="no backend can run it here: tensorrt: needs a CUDA device"):
        load_encoder(exportable, RuntimeConfig(backend="tensorrt", fallback=()), "cpu", progress=lambda m: None)
    # on a CUDA device TensorRT must import; where it is not installed (its wheels are stubs here), it says so
    if importlib.util.find_spec("tensorrt") is None:
        assert unavailable("cuda:0").startswith("not installed")
    assert BACKENDS["onnxruntime"].unavailable("cpu") is None
    with pytest.raises(VitronInputError, match="backend 'tensorrtt'"):
        RuntimeConfig(backend="tensorrtt").check("profile 'x'.runtime")


def _key(**changes) -> EngineKey:
    key = EngineKey(onnx_sha256="ab" * 32, tensorrt_version="10.13.0", compute_capability="8.7", precision="float16",
                    shape_profile=json.dumps({"image": [[1, 3, 1024, 1024]] * 3}))
    return dataclasses.replace(key, **changes)


def test_engine_cache_loads_only_an_engine_built_with_the_same_key(tmp_path):
    cache = EngineCache(tmp_path)
    builds: list[str] = []

    def build(tag):
        return lambda: builds.append(tag) or tag.encode()

    assert cache.load_or_build("sam_image_encoder", _key(), build("orin"), progress=lambda m: None) == b"orin"
    assert cache.load_or_build("sam_image_encoder", _key(), build("again"), progress=lambda m: None) == b"orin"
    assert builds == ["orin"]  # the second start used the cached engine
    # the same file met on another GPU, another TensorRT, another ONNX or shape profile: rebuilt, never loaded
    for foreign in (_key(compute_capability="9.0"), _key(tensorrt_version="10.14.1"), _key(shape_profile="{}")):
        messages: list[str] = []
        data, why = cache.lookup("sam_image_encoder", foreign)
        assert data is None and "was built for another setup" in why
        field = next(k for k, v in dataclasses.asdict(foreign).items() if v != dataclasses.asdict(_key())[k])
        assert field in why
        assert cache.load_or_build("sam_image_encoder", foreign, build(field), progress=messages.append) == field.encode()
        assert any(m.startswith("building engine for sam_image_encoder") and field in m for m in messages)
        cache.store("sam_image_encoder", _key(), b"orin")
    # another ONNX file (another checkpoint or profile) has its own engine; both stay
    other = _key(onnx_sha256="cd" * 32)
    assert cache.lookup("sam_image_encoder", other) == (None, "no cached engine")
    cache.load_or_build("sam_image_encoder", other, build("vit_b"), progress=lambda m: None)
    assert cache.lookup("sam_image_encoder", _key())[0] == b"orin" and cache.lookup("sam_image_encoder", other)[0] == b"vit_b"
    # an engine without its key beside it (copied in by hand) is not trusted
    engine, meta = cache.paths("sam_image_encoder", _key())
    meta.unlink()
    assert cache.lookup("sam_image_encoder", _key())[0] is None
    assert cache.load_or_build("sam_image_encoder", _key(), build("keyless"), progress=lambda m: None) == b"keyless"


def test_precision_is_float32_on_cpu_and_the_runtimes_or_the_sections_on_cuda():
    auto, half = RuntimeConfig(), RuntimeConfig(precision="bfloat16")
    assert auto.dtype_for("float16", "cpu") == half.dtype_for("float16", "cpu") == "float32"
    assert auto.dtype_for("float16", "cuda") == "float16" and half.dtype_for("float16", "cuda:0") == "bfloat16"
    with pytest.raises(VitronInputError, match="precision"):
        RuntimeConfig(precision="int4").check("runtime")


def test_half_precision_masks_match_float32_on_shapes():
    """The segmenter in bfloat16 (CPU autocast; float16 on CUDA takes the same path) against float32, on ShapesWorld
    objects prompted by their boxes: IoU >= 0.98."""
    from vitron_lab.shapes.world import generate_scene
    from vitron_ros.core.masks import iou, mask_to_box
    from vitron_ros.core.model.sam_loader import load_sam
    from vitron_ros.core.specialists.segmenter import SamSegmenter

    profile = load_profile("shapes")
    cfg = profile.section("segmenter")
    full = SamSegmenter(load_sam(cfg.arch, cfg.checkpoint), cfg, "cpu", "float32", progress=lambda m: None)
    half = SamSegmenter(load_sam(cfg.arch, cfg.checkpoint), cfg, "cpu", "bfloat16", progress=lambda m: None)
    assert next(half.sam.parameters()).dtype.__str__() == "torch.bfloat16"
    ious = []
    for seed in range(8):
        scene = generate_scene(seed)
        calls = [SpecialistCall(task="segmentation", box_xyxy=mask_to_box(obj.mask)) for obj in scene.objects]
        for a, b in zip(full.run(Frame(scene.image), calls), half.run(Frame(scene.image), calls), strict=True):
            ious.append(iou(a.masks[0], b.masks[0]))
    print(f"bfloat16 vs float32 mask IoU over {len(ious)} objects: mean {np.mean(ious):.4f}, min {np.min(ious):.4f}")
    assert len(ious) >= 16 and np.mean(ious) >= 0.98


# -- memory budget -------------------------------------------------------------------------------------------------
def test_budget_unloads_the_least_recently_used_and_a_query_that_needs_it_reloads_it(tiny_profile, scene):
    from vitron_ros.core.pipeline import VitronPipeline
    from vitron_ros.core.specialist_pool import tensor_bytes

    messages: list[str] = []
    lazy = _with_runtime(tiny_profile, preload=False)
    pipeline = VitronPipeline.from_profile(lazy, progress=messages.append)
    pool = pipeline.specialists
    assert pool.loaded() == {}  # nothing until first use
    sizes = {name: tensor_bytes(pool.acquire(name).modules()) for name in ("segmenter", "tracker", "editor")}
    budget_mb = (sizes["segmenter"] + max(sizes["tracker"], sizes["editor"])) / 2**20 + 0.5  # two fit, not three
    pipeline = VitronPipeline.from_profile(_with_runtime(lazy, memory_budget_mb=int(np.ceil(budget_mb))),
                                           progress=messages.append)
    pool = pipeline.specialists
    result = pipeline.ground_reply(scene, "x", "<module>segmenter</module> <instruction>segmentation: it</instruction> "
                                   "<Region>[0.1, 0.1, 0.5, 0.5]</Region>")
    assert set(pool.loaded()) == {"segmenter"} and result.masks
    pool.acquire("tracker")
    assert set(pool.loaded()) == {"segmenter", "tracker"}
    pipeline.ground_reply(scene, "x", "<module>segmenter</module> <instruction>segmentation: it</instruction> "
                          "<Region>[0.1, 0.1, 0.5, 0.5]</Region>")  # the segmenter is now the most recently used
    edit = "<module>editor</module> <instruction>add: a red circle</instruction> <Region>[0.1, 0.1, 0.5, 0.5]</Region>"
    result = pipeline.ground_reply(scene, "x", edit)
    assert not result.errors and len(result.images) == 1
    assert set(pool.loaded()) == {"segmenter", "editor"}  # the tracker, least recently used, made room
    assert any(m.startswith("unloaded tracker") for m in messages)
    assert pool.memory_bytes() <= pool.budget_bytes
    status = pipeline.runtime_status()
    assert status["specialists_loaded"] == "segmenter,editor" and float(status["editor_load_s"]) >= 0
    assert float(status["editor_mb"]) == pytest.approx(sizes["editor"] / 2**20, abs=0.05)
    # tracking needs the tracker again: it is reloaded, and the editor goes
    tracks = pipeline.run_specialist("tracker", Frame(scene, clip=(scene, scene)),
                                     [SpecialistCall(task="tracking", box_xyxy=(30, 20, 90, 70))])
    assert not isinstance(tracks[0], Exception) and tracks[0].masks.shape[0] == 2
    assert "tracker" in pool.loaded() and "editor" not in pool.loaded()


def test_a_load_that_runs_out_of_memory_leaves_the_pipeline_serving_with_the_error_in_the_answer(
        tiny_profile, scene, monkeypatch):
    import torch

    from vitron_ros.core.pipeline import VitronPipeline
    from vitron_ros.core.specialists import SPECIALISTS

    pipeline = VitronPipeline.from_profile(_with_runtime(tiny_profile, preload=False), progress=lambda m: None)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.4 GiB total capacity)")

    monkeypatch.setitem(SPECIALISTS, "editor", dataclasses.replace(SPECIALISTS["editor"], build=out_of_memory))
    reply = ("<module>segmenter</module> <instruction>segmentation: it</instruction> <Region>[0.1, 0.1, 0.5, 0.5]"
             "</Region> <module>editor</module> <instruction>add: a red circle</instruction> "
             "<Region>[0.1, 0.1, 0.5, 0.5]</Region>")
    result = pipeline.ground_reply(scene, "segment it and add a circle", reply)
    assert result.masks and not result.images  # the segmentation still served
    [error] = result.errors
    assert "editor" in error and "the editor could not be loaded: OutOfMemoryError: CUDA out of memory" in error
    status = pipeline.runtime_status()
    assert "CUDA out of memory" in status["editor_load_error"] and "editor" not in status["specialists_loaded"]
    monkeypatch.undo()  # memory freed elsewhere: the next query loads it
    assert pipeline.ground_reply(scene, "x", reply).images
    assert "editor_load_error" not in pipeline.runtime_status()


def test_runtime_section_is_checked_like_every_profile_section():
    from vitron_ros.core.config import profile_from_dict

    body = {"llm": {"model": "x"}, "segmenter": {"arch": "tiny", "checkpoint": "y"},
            "runtime": {"backend": "tensorrt", "fallback": ["onnxruntime"], "memory_budget_mb": 6000}}
    runtime = profile_from_dict("robot", body).runtime
    assert runtime.order() == ["tensorrt", "onnxruntime"] and runtime.memory_budget_mb == 6000
    with pytest.raises(VitronInputError, match=r"profile 'robot'.runtime: unknown key\(s\) \['budget'\]"):
        profile_from_dict("robot", {**body, "runtime": {"budget": 1}})
    with pytest.raises(VitronInputError, match="memory_budget_mb: must be >= 0"):
        profile_from_dict("robot", {**body, "runtime": {"memory_budget_mb": -5}})


def test_preload_contains_a_broken_optional_specialist_and_never_unloads_one_in_use(tiny_profile, tmp_path, scene):
    from vitron_ros.core.pipeline import VitronPipeline

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{ not json")
    editor = dataclasses.replace(tiny_profile.section("editor"), model=str(broken), instruct_model=None)
    messages: list[str] = []
    pipeline = VitronPipeline.from_profile(tiny_profile.with_section("editor", editor), progress=messages.append)
    pool = pipeline.specialists
    # preloaded, the editor recorded as failed
    assert set(pool.loaded()) == {"segmenter", "tracker", "generator", "video_generator"}
    assert pool.failures["editor"].startswith("the editor could not be loaded: CheckpointLoadError")
    assert any("the others serve" in m for m in messages)
    edit = "<module>editor</module> <instruction>add: a red circle</instruction> <Region>[0.1, 0.1, 0.5, 0.5]</Region>"
    assert "the editor could not be loaded" in pipeline.ground_reply(scene, "x", edit).errors[0]

    # in use: a call running on the segmenter keeps it loaded even when it is the least recently used
    budget = _with_runtime(tiny_profile, preload=False, memory_budget_mb=1)  # smaller than any one specialist
    pool = VitronPipeline.from_profile(budget, progress=lambda m: None).specialists
    with pool.using("segmenter"):
        pool.acquire("tracker")
        assert "segmenter" in pool.loaded()  # the tracker could only push out what no call is using
        pool.acquire("generator")
        assert set(pool.loaded()) == {"segmenter", "generator"}
    pool.acquire("tracker")
    assert set(pool.loaded()) == {"tracker"}  # now over budget with nothing in use: only the newest stays
