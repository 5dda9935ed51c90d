"""VITRON end to end: image + request (+ sketches) -> answer text and grounded masks.

    pipeline = VitronPipeline.from_profile("tiny")
    result, conversation = pipeline(image, "what is this?", sketches=[Sketch.point(120, 80)])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import ProfileConfig, load_profile
from .conversation import SKETCH_TOKEN, SYSTEM_PROMPT, Conversation, Region, Turn
from .errors import CheckpointLoadError, VitronInputError
from .geometry import check_image
from .invocation import Invocation, ParsedReply, parse_reply
from .masks import box_to_mask, mask_to_box
from .model.vitron_llm import PromptInputs
from .results import (
    SOURCE_EMBEDDING,
    SOURCE_EMBEDDING_AND_BOX,
    SOURCE_EVERYTHING,
    SOURCE_TEXT_BOX,
    SOURCE_USER_PROMPT,
    GroundedMask,
    MaskTrack,
    VitronResult,
)
from .sketch import Sketch
from .specialists import SPECIALIST_FACTORIES, Frame, Specialist, SpecialistCall
from .timing import StageTimer
from .video import ClipSampling, check_clip


def check_device(device: str) -> str:
    import torch

    if device == "cpu":
        return device
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VitronInputError(f"device {device!r} requested but torch sees no CUDA device; use --device cpu")
        return device
    raise VitronInputError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'")


@dataclass
class _Query:
    """Working state of one query, from checked inputs to result."""

    frame: Frame
    request: str
    conversation: Conversation
    timer: StageTimer
    turn: Turn | None = None  # joins `conversation` once the reply is in
    prompt: PromptInputs | None = None
    errors: list[str] = field(default_factory=list)  # format breaks and failed calls, reported in the result
    sketch_masks: list[GroundedMask] = field(default_factory=list)


class VitronPipeline:
    def __init__(self, llm, specialists: dict[str, Specialist], profile_name: str = ""):
        self.llm = llm
        self.specialists = dict(specialists)
        self.profile_name = profile_name
        self.modules = {name: frozenset(s.tasks) for name, s in self.specialists.items()}
        if "segmenter" not in self.specialists:
            raise ValueError("VITRON needs the 'segmenter' specialist: sketches and grounded phrases go through it")
        segmenter = self.specialists["segmenter"]
        if llm.heads is not None and llm.heads.config.prompt_dim != segmenter.prompt_dim:
            raise CheckpointLoadError(
                f"signal projector outputs width {llm.heads.config.prompt_dim} but the segmenter's prompt tokens "
                f"are {segmenter.prompt_dim} wide: heads and SAM checkpoints do not belong together"
            )

    @classmethod
    def from_profile(cls, profile: ProfileConfig | str, device: str = "cpu", progress=print) -> VitronPipeline:
        """Load every model a profile names (building the random tiny ones first when the profile says so)."""
        from .model.tiny import build_tiny_assets
        from .model.vitron_llm import VitronLLM

        profile = load_profile(profile) if isinstance(profile, str) else profile
        device = check_device(device)
        if profile.build_if_missing:
            build_tiny_assets(profile, progress=progress)
        hint = f"run `vitron models fetch --profile {profile.name}`"
        specialists = {name: factory(profile, device) for name, factory in SPECIALIST_FACTORIES.items()}
        specialists = {name: s for name, s in specialists.items() if s is not None}
        llm = VitronLLM.from_pretrained(profile.llm, device=device, fetch_hint=hint)
        return cls(llm, specialists, profile.name)

    def _sync(self):
        import torch

        return torch.cuda.synchronize if str(self.llm.device).startswith("cuda") else None

    def check_inputs(self, image: np.ndarray, request: str, sketches: Sequence[Sketch]) -> np.ndarray:
        image = check_image(image)
        if not isinstance(request, str) or not request.strip():
            raise VitronInputError("request must be non-empty text")
        height, width = image.shape[:2]
        for i, sketch in enumerate(sketches):
            if not isinstance(sketch, Sketch):
                raise VitronInputError(f"sketch {i} must be a Sketch, got {type(sketch).__name__}")
            sketch.validate(height, width, name=f"sketch {i} ({sketch.kind})")
        return image

    def __call__(
        self,
        image: np.ndarray,
        request: str,
        sketches: Sequence[Sketch] = (),
        conversation: Conversation | None = None,
        progress=None,
    ) -> tuple[VitronResult, Conversation]:
        """Answer `request` about `image` (H, W, 3) uint8 RGB.

        Returns the result and the conversation extended by this turn; pass it back for a follow-up question
        about the same image. `progress(stage, reply_so_far)` is called as each stage starts and after every
        generated token; an exception it raises (QueryCancelled) abandons the query.
        """
        query = self._begin(image, request, sketches, conversation, progress)
        # 4. Generate the reply
        with query.timer.stage("llm_generate"):
            on_text = (lambda text: progress("llm_generate", text)) if progress is not None else None
            reply, reply_ids = self.llm.generate(query.prompt, on_text=on_text)
        return self._finish(query, reply, reply_ids), query.conversation

    def ask_clip(
        self,
        frames: Sequence[np.ndarray],
        request: str,
        sampling: ClipSampling | None = None,
        conversation: Conversation | None = None,
        progress=None,
    ) -> tuple[VitronResult, Conversation]:
        """Answer `request` about a clip: frames (each (H, W, 3) uint8 RGB, oldest first).

        The sampled frames go through the video encoder (frame features pooled over time) into the LLM. Masks and
        boxes refer to the first frame (the key frame); with a tracker loaded, every grounded mask is followed
        through all frames, giving `result.tracks` (video referring segmentation).
        """
        sampling = sampling or ClipSampling()
        frames = check_clip(frames, sampling)
        sampled = [frames[i] for i in sampling.indices(len(frames))]
        query = self._begin(frames[0], request, (), conversation, progress, video=sampled)
        query.frame.clip = tuple(frames)
        with query.timer.stage("llm_generate"):
            on_text = (lambda text: progress("llm_generate", text)) if progress is not None else None
            reply, reply_ids = self.llm.generate(query.prompt, on_text=on_text)
        result = self._finish(query, reply, reply_ids)
        result.clip_frames = len(frames)
        return result, query.conversation

    def ground_request(self, image: np.ndarray, request: str) -> tuple[np.ndarray, float] | None:
        """(mask, score) of the object `request` names in `image`, or None: how a tracker re-finds a lost object."""
        result, _ = self(image, request)
        masks = [m for m in result.masks if m.invocation_index is not None and m.mask.any()]
        return (masks[0].mask, masks[0].score) if masks else None

    def ground_reply(self, image: np.ndarray, request: str, reply: str, sketches: Sequence[Sketch] = ()) -> VitronResult:
        """Ground a given reply (teacher forcing) instead of generating one: same prompt, parser and specialists.

        Used for evaluation and training on written answers, and to replay an answer from a log.
        """
        query = self._begin(image, request, sketches, None)
        return self._finish(query, reply, self.llm.encode_reply(reply))

    def _begin(self, image, request, sketches, conversation: Conversation | None, progress=None, video=None) -> _Query:
        # 1. Check inputs
        image = self.check_inputs(image, request, sketches)
        height, width = image.shape[:2]
        conversation = conversation if conversation is not None else Conversation(
            system=self.llm.config.system_prompt or SYSTEM_PROMPT, image_hw=(height, width)
        )
        if conversation.image_hw not in (None, (height, width)):
            raise VitronInputError(
                f"conversation is about a {conversation.image_hw} image, got {(height, width)}; start a new one"
            )
        on_stage = (lambda name: progress(name, "")) if progress is not None else None
        timer = StageTimer(self._sync(), on_stage)
        query = _Query(frame=Frame(image), request=request, conversation=conversation, timer=timer)

        # 2. Sketches -> region masks (through the segmenter, falling back to the drawn shape)
        with query.timer.stage("segmenter_prompts"):
            regions = self.sketch_regions(query, sketches)

        # 3. Encode the image and build the prompt with image and sketch embeddings spliced in
        with query.timer.stage("vision_encoder"):
            encoding = self.llm.encode_image(image) if video is None else self.llm.encode_video(video)
        placeholders = " ".join(f"Region {i + 1}: {SKETCH_TOKEN}" for i in range(len(regions)))
        query.turn = Turn(user=f"{request.strip()} {placeholders}".strip(), regions=tuple(regions))
        # The prompt is built on a copy: a query that fails midway leaves the caller's conversation untouched.
        pending = Conversation(system=conversation.system, turns=[*conversation.turns, query.turn])
        with query.timer.stage("prompt"):
            query.prompt = self.llm.build_prompt(pending, encoding)
        return query

    def _finish(self, query: _Query, reply: str, reply_ids: list[int]) -> VitronResult:
        query.turn.assistant = reply
        query.conversation.turns.append(query.turn)
        query.conversation.image_hw = query.frame.image.shape[:2]
        # 5-7. Parse, compute signal embeddings, call specialists
        result = self._ground(query, reply, reply_ids)
        result.masks[:0] = query.sketch_masks
        result.timings = query.timer.finish()
        return result

    def sketch_regions(self, query: _Query, sketches: Sequence[Sketch]) -> list[Region]:
        """Each sketch -> a Region for the sketch encoder; its mask also goes into the result."""
        if not sketches:
            return []
        height, width = query.frame.image.shape[:2]
        calls = [
            SpecialistCall(
                task="segmentation",
                points_xy=s.points_xy,
                point_labels=np.ones(len(s.points_xy), np.int64),
                box_xyxy=s.box_xyxy,
                mask=s.mask,
            )
            for s in sketches
        ]
        outputs = self.specialists["segmenter"].run(query.frame, calls)
        regions = []
        for i, (sketch, output) in enumerate(zip(sketches, outputs, strict=True)):
            if isinstance(output, Exception):
                query.errors.append(f"sketch {i}: segmenter failed: {output}")
                mask, score = sketch.drawn_mask(height, width), 0.0
            else:
                mask, score = output.masks[0], float(output.scores[0])
                if sketch.kind == "box":  # SAM may leak outside a box prompt; the user's box bounds the region
                    mask = mask & box_to_mask(sketch.box_xyxy, height, width)
                if not mask.any():
                    query.errors.append(f"sketch {i}: segmenter found nothing there; using the drawn {sketch.kind}")
                    mask = sketch.drawn_mask(height, width)
            # The location embedding describes what the user drew: their box, else the region mask's extent.
            box = sketch.box_xyxy if sketch.kind == "box" else mask_to_box(mask)
            regions.append(Region(mask=mask, box_xyxy=box, kind=sketch.kind))
            query.sketch_masks.append(GroundedMask(f"region {i + 1}", mask, mask_to_box(mask), score, SOURCE_USER_PROMPT))
        return regions

    def _ground(self, query: _Query, reply: str, reply_ids: list[int]) -> VitronResult:
        height, width = query.frame.image.shape[:2]
        timer, errors, request = query.timer, query.errors, query.request
        # 5. Parse: the one strict parser; format breaks become errors, not exceptions
        with timer.stage("parse"):
            parsed: ParsedReply = parse_reply(reply, (height, width), self.modules, self.llm.config.box_format)
        errors.extend(parsed.errors)

        # 6. Signal embeddings: hidden states at [SEG], projected into the segmenter's prompt space
        embeddings = np.zeros((0, 0), np.float32)
        if any(call.seg_index is not None for call in parsed.invocations) and self.llm.has_signal_projector:
            with timer.stage("signal_forward"):
                embeddings = self.llm.signal_embeddings(query.prompt, reply_ids)
            if len(embeddings) != parsed.seg_count:
                errors.append(
                    f"reply shows {parsed.seg_count} [SEG] markers but the model emitted {len(embeddings)} [SEG] tokens"
                )

        # 7. Specialist calls, grouped per specialist so each encodes the image once
        result = VitronResult(answer=parsed.text, raw_reply=reply, image_hw=(height, width), profile=self.profile_name)
        planned: dict[str, list[tuple[int, Invocation, SpecialistCall, str]]] = {}
        for index, invocation in enumerate(parsed.invocations):
            result.invocations.append(invocation)
            call, source, error = self._specialist_call(invocation, embeddings, request)
            if error:
                errors.append(f"invocation {index} ({invocation.module} {invocation.task}): {error}")
                continue
            # A tracking call is grounded on the key frame by the segmenter first; the tracker then follows that mask.
            planned.setdefault("segmenter" if invocation.module == "tracker" else invocation.module, []).append(
                (index, invocation, call, source)
            )
        for module, items in planned.items():
            with timer.stage("segmenter_answer" if module == "segmenter" else f"{module}_answer"):
                outputs = self.specialists[module].run(query.frame, [call for _, _, call, _ in items])
            for (index, invocation, _, source), output in zip(items, outputs, strict=True):
                if isinstance(output, Exception):
                    errors.append(f"invocation {index} ({module} {invocation.task}): {output}")
                    continue
                result.masks.extend(self._grounded_masks(index, invocation, output, source, request))
        self._track(query, result)
        result.errors = errors
        return result

    def _track(self, query: _Query, result: VitronResult) -> None:
        """Follow grounded masks through the clip: all of them in a clip query, else those the LLM asked to track."""
        if "tracker" not in self.specialists:
            return
        clip_query = bool(query.frame.clip)
        chosen = [
            m for m in result.masks
            if m.invocation_index is not None and m.mask.any() and m.source != SOURCE_EVERYTHING
            and (clip_query or result.invocations[m.invocation_index].module == "tracker")
        ]
        if not chosen:
            return
        calls = [SpecialistCall(task="tracking", instruction=m.label, mask=m.mask) for m in chosen]
        with query.timer.stage("tracker_answer"):
            outputs = self.specialists["tracker"].run(query.frame, calls)
        for grounded, output in zip(chosen, outputs, strict=True):
            if isinstance(output, Exception):
                query.errors.append(f"tracking {grounded.label!r}: {output}")
                continue
            result.tracks.append(MaskTrack(grounded.label, output.masks, output.scores, grounded.invocation_index))

    def _specialist_call(self, invocation: Invocation, embeddings: np.ndarray, request: str):
        """Invocation -> (SpecialistCall, source label, None) or (None, None, error text)."""
        embedding = None
        if invocation.seg_index is not None and self.llm.has_signal_projector:
            if invocation.seg_index < len(embeddings):
                embedding = embeddings[invocation.seg_index]
        if invocation.task == "everything":
            return SpecialistCall(task="everything", instruction=invocation.instruction), SOURCE_EVERYTHING, None
        if embedding is None and invocation.box_xyxy is None:
            why = "this checkpoint has no signal projector" if invocation.seg_index is not None else "no [SEG]"
            return None, None, f"nothing to prompt the specialist with ({why} and no <Region> box)"
        source = SOURCE_EMBEDDING_AND_BOX if (embedding is not None and invocation.box_xyxy) else (
            SOURCE_EMBEDDING if embedding is not None else SOURCE_TEXT_BOX
        )
        call = SpecialistCall(
            task="segmentation" if invocation.module == "tracker" else invocation.task,
            instruction=invocation.instruction or request,
            box_xyxy=invocation.box_xyxy,
            embedding=embedding,
        )
        return call, source, None

    @staticmethod
    def _grounded_masks(index, invocation, output, source, request) -> list[GroundedMask]:
        if invocation.task == "everything":
            return [
                GroundedMask(label, mask, mask_to_box(mask), float(score), source, None, index)
                for label, mask, score in zip(output.labels, output.masks, output.scores, strict=True)
            ]
        mask = output.masks[0]  # best-scored candidate
        label = invocation.phrase or invocation.instruction or request.strip()
        return [GroundedMask(label, mask, mask_to_box(mask), float(output.scores[0]), source, invocation.phrase, index)]
