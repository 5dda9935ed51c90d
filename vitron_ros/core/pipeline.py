"""VITRON end to end: image + request (+ sketches) -> answer text and grounded masks.

    pipeline = VitronPipeline.from_profile("tiny")
    result, conversation = pipeline(image, "what is this?", sketches=[Sketch.point(120, 80)])
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import ProfileConfig, load_profile
from .conversation import SKETCH_TOKEN, Conversation, Region, Turn
from .errors import CheckpointLoadError, VitronInputError
from .geometry import check_image
from .invocation import Invocation, ParsedReply, parse_reply
from .masks import box_to_mask, mask_to_box
from .model.language_model import LanguageModel
from .model.vitron_llm import LlmReply, PromptInputs
from .planned_reply import ANSWER, TaskChoice, plan_reply
from .reply_grammar import ReplyGrammar
from .results import (
    OUTPUT_KINDS,
    SOURCE_EMBEDDING,
    SOURCE_EMBEDDING_AND_BOX,
    SOURCE_EVERYTHING,
    SOURCE_TEXT_BOX,
    SOURCE_USER_PROMPT,
    GroundedMask,
    VitronResult,
)
from .sketch import Sketch
from .specialist_pool import SpecialistPool, SpecialistUnavailable, tensor_bytes
from .specialists import SPECIALISTS, Frame, Specialist, SpecialistCall, grounding_specialist, system_prompt
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
    encoding: object = None  # the image's (or clip's) features as the LLM sees them
    errors: list[str] = field(default_factory=list)  # format breaks and failed calls, reported in the result
    sketch_masks: list[GroundedMask] = field(default_factory=list)


class VitronPipeline:
    """The LLM and the specialists (registry name -> specialist; see `specialists.SPECIALISTS`), which a
    `SpecialistPool` loads on first use within the profile's memory budget."""

    def __init__(self, llm: LanguageModel, specialists: SpecialistPool | dict[str, Specialist], profile_name: str = ""):
        self.llm = llm
        if not isinstance(specialists, SpecialistPool):
            specialists = SpecialistPool(loaded=dict(specialists), progress=lambda message: None)
        self.specialists = specialists
        self.profile_name = profile_name
        unknown = sorted(set(self.specialists.names) - set(SPECIALISTS))
        if unknown:
            raise ValueError(f"specialists {unknown} have no registry entry; registered: {sorted(SPECIALISTS)}")
        # module name -> tasks, for the parser: the registry's, loaded or not (a task a specialist cannot serve, like
        # `instruct` without an InstructPix2Pix model, fails at the specialist with the reason)
        self.modules = {name: frozenset(SPECIALISTS[name].tasks) for name in self.specialists.names}
        # The LLM, the grounder and the tracker serve one query at a time; a long-running specialist has its own
        # lock and runs after the model lock is released.
        self.model_lock = threading.RLock()
        self.specialist_locks = {
            name: threading.Lock() for name in self.specialists.names if SPECIALISTS[name].long_running
        }
        # sketches, grounded phrases and bare [SEG] go through the one entry that grounds masks
        self.grounder = grounding_specialist(self.specialists.names)
        self.grounding_task = SPECIALISTS[self.grounder].grounding_task  # what phrases, [SEG] and sketches become
        for name in self.specialists.names:
            if (loaded := self.specialists.peek(name)) is not None:
                self._check_specialist(name, loaded)
        self.specialists.check = self._check_specialist  # and every specialist loaded later
        self._llm_bytes: int | None = None

    def _check_specialist(self, name: str, specialist: Specialist) -> None:
        """The LLM's signal widths must match what the specialist reads; else the checkpoints do not belong together."""
        llm = self.llm
        if name == self.grounder and llm.prompt_dim is not None and llm.prompt_dim != specialist.prompt_dim:
            raise CheckpointLoadError(
                f"signal projector outputs width {llm.prompt_dim} but the {name}'s prompt "
                f"tokens are {specialist.prompt_dim} wide: heads and {name} checkpoints do not belong together"
            )
        width = getattr(specialist, "signal_dim", None)
        if width is not None and width != llm.hidden_size:
            raise CheckpointLoadError(
                f"the {name}'s signal projector reads {width}-wide [SEG] states but the LLM's are "
                f"{llm.hidden_size}: the {name} and LLM checkpoints do not belong together"
            )

    @property
    def device(self) -> str:
        return str(self.llm.device)

    def memory_bytes(self) -> int:
        """Bytes of the loaded models' weights: the LLM's (counted once) and the loaded specialists'."""
        if self._llm_bytes is None:
            self._llm_bytes = tensor_bytes(self.llm.modules())
        return self._llm_bytes + self.specialists.memory_bytes()

    def runtime_status(self) -> dict[str, str]:
        """What diagnostics show about the runtime: the LLM's encoders' backends, and the pool's status."""
        values = {f"llm.{key}_backend": enc.describe() for key, enc in self.llm.encoders().items()}
        values["model_memory_mb"] = f"{self.memory_bytes() / 2**20:.1f}"
        values.update(self.specialists.status())
        return values

    def exportables(self) -> dict:
        """Name -> Exportable of every heavy network loaded (the LLM's and each specialist's), each once."""
        found = {}
        for component in [self.llm, *(s for _, s in self.specialists.items())]:
            for exportable in getattr(component, "exportables", list)():
                found.setdefault(exportable.name, exportable)
        return found

    def run_specialist(self, name: str, frame: Frame, calls: Sequence[SpecialistCall]) -> list:
        """`name`'s outputs for `calls`, loading it first; a specialist that cannot load fails each call with why."""
        try:
            with self.specialists.using(name) as specialist:
                return specialist.run(frame, calls)
        except SpecialistUnavailable as exc:
            return [exc] * len(calls)

    @classmethod
    def from_profile(cls, profile: ProfileConfig | str, device: str = "cpu", progress=print) -> VitronPipeline:
        """Load the LLM and the specialists a profile names: every specialist now when `runtime.preload` (as many
        as the memory budget holds), else each on first use. Missing checkpoints raise with the profile's hint."""
        from .model.language_model import load_language_model

        profile = load_profile(profile) if isinstance(profile, str) else profile
        device = check_device(device)
        hint = profile.missing_hint()
        pool = SpecialistPool(profile, device, progress)
        if profile.runtime.preload:
            pool.preload()
        llm = load_language_model(profile.llm, profile.runtime, device, hint, progress)
        return cls(llm, pool, profile.name)

    def _sync(self):
        import torch

        return torch.cuda.synchronize if self.device.startswith("cuda") else None

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
        task: str | None = None,
    ) -> tuple[VitronResult, Conversation]:
        """Answer `request` about `image` (H, W, 3) uint8 RGB.

        Returns the result and the conversation extended by this turn; pass it back for a follow-up question
        about the same image. `progress(stage, reply_so_far)` is called as each stage starts and after every
        generated token; an exception it raises (QueryCancelled) abandons the query. `task` (one of the grounder's
        tasks, e.g. "segmentation"), when the caller knows it, makes the reply call it with a prompt, so a request
        to segment always reaches the segmenter (under the profile's grammar).
        """
        with self.model_lock:
            query = self._begin(image, request, sketches, conversation, progress)
            # 4. The reply: generated under the invocation grammar, or planned (the checkpoint's family says which)
            with query.timer.stage("llm_generate"):
                on_text = (lambda text: progress("llm_generate", text)) if progress is not None else None
                reply = self._reply(query, task, on_text)
            result, deferred = self._finish(query, reply)
        return self._run_deferred(query, result, deferred), query.conversation

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
        sampling = sampling or ClipSampling(frames=self.llm.clip_frames)
        frames = check_clip(frames, sampling)
        sampled = [frames[i] for i in sampling.indices(len(frames))]
        with self.model_lock:
            query = self._begin(frames[0], request, (), conversation, progress, video=sampled)
            query.frame.clip = tuple(frames)
            with query.timer.stage("llm_generate"):
                on_text = (lambda text: progress("llm_generate", text)) if progress is not None else None
                reply = self._reply(query, None, on_text)
            result, deferred = self._finish(query, reply)
        result = self._run_deferred(query, result, deferred)
        result.clip_frames = len(frames)
        return result, query.conversation

    def _reply(self, query: _Query, task: str | None, on_text) -> LlmReply:
        """4. The reply and its signals, from one call to the LLM: written by it under the grammar, or planned from its
        answers to the prompts it was trained on (a "planned" checkpoint family, e.g. LLaVA-1.5: planned_reply.py)."""
        if self.llm.family.reply != "planned":
            grammar = self.reply_grammar(query.frame.image.shape[:2], task)
            return self.llm.answer(query.prompt, grammar=grammar, on_text=on_text, stage=query.timer.stage)
        choices = {ANSWER: TaskChoice(None, ANSWER)}
        for name in self.specialists.names:
            for task_name, spec in SPECIALISTS[name].tasks.items():
                if spec.plannable:
                    choices.setdefault(task_name, TaskChoice(name, task_name, spec.needs_prompt, spec.grounded))
        history = dataclasses.replace(query.conversation, image_hw=query.frame.image.shape[:2])
        written = plan_reply(self.llm, query.encoding, history, query.turn, choices, task, on_text)
        return self.llm.answer(query.prompt, written=written, stage=query.timer.stage)

    def reply_grammar(self, image_hw: tuple[int, int] | None = None, task: str | None = None) -> ReplyGrammar:
        """What this profile's replies may say (reply_grammar.py): the loaded specialists' tasks, the LLM's box
        format and [SEG], boxes bounded to `image_hw`; `task` must then be called with a prompt."""
        if task is not None and task not in self.modules[self.grounder]:
            raise VitronInputError(f"task {task!r}: expected one of the {self.grounder}'s tasks "
                                   f"{sorted(self.modules[self.grounder])}")
        names = self.specialists.names
        grounded_only = self.llm.family.reply == "grounded"  # GLaMM, LISA: phrases and [SEG], never a call
        return ReplyGrammar(
            modules={name: tuple(SPECIALISTS[name].tasks) for name in names},
            grounder=self.grounder,
            box_format=self.llm.config.box_format,
            seg=self.llm.has_seg_token,
            image_hw=tuple(int(v) for v in image_hw) if image_hw is not None else None,
            require=task,
            prompted=frozenset(f"{name}:{task_name}" for name in names
                               for task_name, spec in SPECIALISTS[name].tasks.items() if spec.needs_prompt),
            calls=not grounded_only,
            phrase_boxes=not grounded_only,
            box_style=self.llm.family.box_style,
        )

    def segment(self, image: np.ndarray, prompts: Sequence[tuple[str, dict]] = (),
                everything: bool = False) -> tuple[list[GroundedMask], list[str]]:
        """Prompts only, no LLM (Segment.srv): each (label, prompt) -> the grounder's best mask for it, where a prompt
        holds SpecialistCall fields (box_xyxy, or points_xy and point_labels; pixels of `image`), or with
        `everything` every object the grounder finds. Returns the masks and one error per prompt that failed."""
        image = check_image(image)
        if everything:
            task = next(name for name, spec in SPECIALISTS[self.grounder].tasks.items() if spec.whole_image)
            labelled = [("everything", SpecialistCall(task=task))]
        else:
            labelled = [(label, SpecialistCall(task=self.grounding_task, **prompt)) for label, prompt in prompts]
        with self.model_lock:
            outputs = self.run_specialist(self.grounder, Frame(image), [call for _, call in labelled])
        masks, errors = [], []
        for (label, _), output in zip(labelled, outputs, strict=True):
            if isinstance(output, Exception):
                errors.append(f"{label}: {output}")
            elif everything:
                masks.extend(GroundedMask(name, m, mask_to_box(m), float(s), SOURCE_EVERYTHING)
                             for name, m, s in zip(output.labels, output.masks, output.scores, strict=True))
            else:
                best = output.masks[0]
                masks.append(GroundedMask(label, best, mask_to_box(best), float(output.scores[0]), SOURCE_USER_PROMPT))
        return masks, errors

    def ground_request(self, image: np.ndarray, request: str) -> tuple[np.ndarray, float] | None:
        """(mask, score) of the object `request` names in `image`, or None: how a tracker re-finds a lost object."""
        result, _ = self(image, request, task=self.grounding_task)
        masks = [m for m in result.masks if m.invocation_index is not None and m.mask.any()]
        return (masks[0].mask, masks[0].score) if masks else None

    def ground_reply(
        self, image: np.ndarray, request: str, reply: str, sketches: Sequence[Sketch] = (), progress=None
    ) -> VitronResult:
        """Ground a given reply (teacher forcing) instead of generating one: same prompt, parser and specialists.

        Used for evaluation and training on written answers, and to replay an answer from a log.
        """
        with self.model_lock:
            query = self._begin(image, request, sketches, None, progress)
            result, deferred = self._finish(query, self.llm.answer(query.prompt, written=reply, stage=query.timer.stage))
        return self._run_deferred(query, result, deferred)

    def _begin(self, image, request, sketches, conversation: Conversation | None, progress=None, video=None) -> _Query:
        # 1. Check inputs
        image = self.check_inputs(image, request, sketches)
        height, width = image.shape[:2]
        family = self.llm.family  # the checkpoint's own system turn, style and image sentence
        conversation = conversation if conversation is not None else Conversation(
            system=self.llm.config.system_prompt or family.system_prompt
            or system_prompt(self.specialists.names),
            image_hw=(height, width), style=family.prompt_style, image_prefix=family.image_prefix,
        )
        if conversation.image_hw not in (None, (height, width)):
            raise VitronInputError(
                f"conversation is about a {conversation.image_hw} image, got {(height, width)}; start a new one"
            )
        on_stage = (lambda name: progress(name, "")) if progress is not None else None
        timer = StageTimer(self._sync(), on_stage)
        on_step = (lambda step, steps: progress("denoise", f"{step}/{steps}")) if progress is not None else None
        query = _Query(frame=Frame(image, on_step=on_step), request=request, conversation=conversation, timer=timer)

        # 2. Sketches -> region masks (through the segmenter, falling back to the drawn shape)
        with query.timer.stage("segmenter_prompts"):
            regions = self.sketch_regions(query, sketches)

        # 3. Encode the image and build the prompt with image and sketch embeddings spliced in
        with query.timer.stage("vision_encoder"):
            encoding = self.llm.encode_image(image) if video is None else self.llm.encode_video(video)
        query.encoding = encoding
        placeholders = " ".join(f"Region {i + 1}: {SKETCH_TOKEN}" for i in range(len(regions)))
        query.turn = Turn(user=f"{request.strip()} {placeholders}".strip(), regions=tuple(regions))
        # The prompt is built on a copy: a query that fails midway leaves the caller's conversation untouched.
        pending = dataclasses.replace(conversation, turns=[*conversation.turns, query.turn])
        with query.timer.stage("prompt"):
            query.prompt = self.llm.build_prompt(pending, encoding)
        return query

    def _finish(self, query: _Query, reply: LlmReply):
        query.turn.assistant = reply.text
        query.conversation.turns.append(query.turn)
        query.conversation.image_hw = query.frame.image.shape[:2]
        # 5-7. Parse, call specialists with the reply's signals (long-running ones are handed back, deferred)
        result, deferred = self._ground(query, reply)
        result.masks[:0] = query.sketch_masks
        return result, deferred

    def _run_deferred(self, query: _Query, result: VitronResult, deferred) -> VitronResult:
        """8. Long-running specialists (diffusion) run after the model lock is released, each under its own lock:
        a generation on one camera does not hold up another camera's query."""
        for module, items in deferred:
            with self.specialist_locks[module]:
                self._serve(query, result, module, items)
        result.timings = query.timer.finish()
        return result

    def sketch_regions(self, query: _Query, sketches: Sequence[Sketch]) -> list[Region]:
        """Each sketch -> a Region for the sketch encoder; its mask also goes into the result."""
        if not sketches:
            return []
        height, width = query.frame.image.shape[:2]
        calls = [
            SpecialistCall(
                task=self.grounding_task,
                points_xy=s.points_xy,
                point_labels=np.ones(len(s.points_xy), np.int64),
                box_xyxy=s.box_xyxy,
                mask=s.mask,
            )
            for s in sketches
        ]
        outputs = self.run_specialist(self.grounder, query.frame, calls)
        regions = []
        for i, (sketch, output) in enumerate(zip(sketches, outputs, strict=True)):
            if isinstance(output, Exception):
                query.errors.append(f"sketch {i}: {self.grounder} failed: {output}")
                mask, score = sketch.drawn_mask(height, width), 0.0
            else:
                mask, score = output.masks[0], float(output.scores[0])
                if sketch.kind == "box":  # SAM may leak outside a box prompt; the user's box bounds the region
                    mask = mask & box_to_mask(sketch.box_xyxy, height, width)
                if not mask.any():
                    query.errors.append(f"sketch {i}: {self.grounder} found nothing there; using the drawn {sketch.kind}")
                    mask = sketch.drawn_mask(height, width)
            # The location embedding describes what the user drew: their box, else the region mask's extent.
            box = sketch.box_xyxy if sketch.kind == "box" else mask_to_box(mask)
            regions.append(Region(mask=mask, box_xyxy=box, kind=sketch.kind))
            query.sketch_masks.append(GroundedMask(f"region {i + 1}", mask, mask_to_box(mask), score, SOURCE_USER_PROMPT))
        return regions

    def _ground(self, query: _Query, reply: LlmReply) -> VitronResult:
        height, width = query.frame.image.shape[:2]
        timer, errors, request = query.timer, query.errors, query.request
        # 5. Parse: the one strict parser; format breaks become errors, not exceptions
        with timer.stage("parse"):
            parsed: ParsedReply = parse_reply(
                reply.text, (height, width), self.modules, self.llm.config.box_format, grounder=self.grounder,
                grounding_task=self.grounding_task,
            )
        errors.extend(parsed.errors)

        # 6. Signal embeddings came with the reply: hidden states at [SEG]; the grounder's prompt tokens by the LLM's
        #    trained head, other specialists project the hidden state with their own
        hidden, embeddings = reply.signals, reply.embeddings
        if len(hidden) != parsed.seg_count and any(call.seg_index is not None for call in parsed.invocations):
            errors.append(
                f"reply shows {parsed.seg_count} [SEG] markers but the model emitted {len(hidden)} [SEG] tokens"
            )

        # 7. Specialist calls. Calls the grounder serves (its own, and grounded tasks' regions) run first, as one
        #    batch so it encodes the image once; then every other specialist gets its batch.
        result = VitronResult(answer=parsed.text, raw_reply=reply.text, image_hw=(height, width), profile=self.profile_name)
        planned: dict[str, list[tuple[int, Invocation, SpecialistCall, str]]] = {}
        grounding: list[tuple[int, Invocation, SpecialistCall, str]] = []
        for index, invocation in enumerate(parsed.invocations):
            result.invocations.append(invocation)
            call, source, error = self._specialist_call(invocation, embeddings, hidden, request)
            if error:
                errors.append(f"invocation {index} ({invocation.module} {invocation.task}): {error}")
                continue
            if invocation.module == self.grounder or self._grounded(invocation):
                grounding.append((index, invocation, call, source))
            else:
                planned.setdefault(invocation.module, []).append((index, invocation, call, source))
        if grounding:
            with timer.stage(f"{self.grounder}_answer"):
                outputs = self.run_specialist(
                    self.grounder, query.frame, [self._as_grounding(call) for _, _, call, _ in grounding]
                )
            for (index, invocation, call, source), output in zip(grounding, outputs, strict=True):
                if isinstance(output, Exception):
                    errors.append(f"invocation {index} ({invocation.module} {invocation.task}): {output}")
                    continue
                self._collect(result, self.grounder, index, invocation, output, source, request)
                if invocation.module != self.grounder:  # a grounded task: its specialist works on that mask
                    mask = result.masks[-1].mask
                    if not mask.any():
                        errors.append(f"invocation {index} ({invocation.module} {invocation.task}): "
                                      f"the {self.grounder} found nothing for {call.instruction!r}")
                        continue
                    planned.setdefault(invocation.module, []).append(
                        (index, invocation, dataclasses.replace(call, mask=mask), source)
                    )
        deferred = [(module, items) for module, items in planned.items() if module in self.specialist_locks]
        for module, items in planned.items():
            if module not in self.specialist_locks:
                self._serve(query, result, module, items)
        if query.frame.clip:
            self._follow_clip(query, result, set(planned))
        result.errors = errors  # the same list: deferred calls append their failures to it
        return result, deferred

    def _serve(self, query: _Query, result: VitronResult, module: str, items) -> None:
        with query.timer.stage(f"{module}_answer"):
            outputs = self.run_specialist(module, query.frame, [call for _, _, call, _ in items])
        for (index, invocation, call, source), output in zip(items, outputs, strict=True):
            if isinstance(output, Exception):
                query.errors.append(f"invocation {index} ({module} {invocation.task}): {output}")
                continue
            result.calls[index] = (module, call)
            self._collect(result, module, index, invocation, output, source, query.request)

    def _grounded(self, invocation: Invocation) -> bool:
        task = SPECIALISTS[invocation.module].tasks.get(invocation.task)
        return task is not None and task.grounded

    def _as_grounding(self, call: SpecialistCall) -> SpecialistCall:
        """The grounder's half of a call: its first task, same prompts (a grounded task's own task is not its)."""
        task = call.task if call.task in self.modules[self.grounder] else self.grounding_task
        return dataclasses.replace(call, task=task)

    def _collect(self, result, module, index, invocation, output, source, request) -> None:
        entry = SPECIALISTS[module]
        OUTPUT_KINDS[entry.output](result, entry, index, invocation, output, source, request)

    def _follow_clip(self, query: _Query, result: VitronResult, already: set[str]) -> None:
        """In a clip query, every grounded mask goes to each loaded specialist that follows clips (the tracker)."""
        chosen = [
            m for m in result.masks
            if m.invocation_index is not None and m.mask.any() and m.source != SOURCE_EVERYTHING
        ]
        for name, entry in SPECIALISTS.items():
            if not entry.follows_clip or name not in self.specialists or not chosen:
                continue
            task = next(iter(entry.tasks))
            pending = [m for m in chosen if not (name in already and result.invocations[m.invocation_index].module == name)]
            calls = [SpecialistCall(task=task, instruction=m.label, mask=m.mask) for m in pending]
            with query.timer.stage(f"{name}_answer"):
                outputs = self.run_specialist(name, query.frame, calls)
            for grounded, output in zip(pending, outputs, strict=True):
                if isinstance(output, Exception):
                    query.errors.append(f"{task} {grounded.label!r}: {output}")
                    continue
                invocation = result.invocations[grounded.invocation_index]
                labelled = dataclasses.replace(invocation, phrase=grounded.label)
                self._collect(result, name, grounded.invocation_index, labelled, output, grounded.source, query.request)

    def _specialist_call(self, invocation: Invocation, embeddings: np.ndarray, hidden: np.ndarray, request: str):
        """Invocation -> (SpecialistCall, source label, None) or (None, None, error text)."""
        embedding = signal = None
        if invocation.seg_index is not None and invocation.seg_index < len(hidden):
            signal = hidden[invocation.seg_index]
            if invocation.seg_index < len(embeddings):
                embedding = embeddings[invocation.seg_index]
        if SPECIALISTS[invocation.module].tasks[invocation.task].whole_image:
            return SpecialistCall(task=invocation.task, instruction=invocation.instruction), SOURCE_EVERYTHING, None
        needs_prompt = invocation.module == self.grounder or self._grounded(invocation)
        if needs_prompt and embedding is None and invocation.box_xyxy is None:
            why = "this checkpoint has no signal projector" if invocation.seg_index is not None else "no [SEG]"
            return None, None, f"nothing to prompt the {self.grounder} with ({why} and no <Region> box)"
        # a checkpoint whose segmenter learned to find the object from the signal alone grounds without the box
        box = None if needs_prompt and embedding is not None and not self.llm.box_prompt else invocation.box_xyxy
        source = SOURCE_EMBEDDING_AND_BOX if (embedding is not None and box) else (
            SOURCE_EMBEDDING if embedding is not None else SOURCE_TEXT_BOX
        )
        call = SpecialistCall(
            task=invocation.task,
            instruction=invocation.instruction or request,
            box_xyxy=box,
            embedding=embedding,
            signal=signal,
        )
        return call, source, None
