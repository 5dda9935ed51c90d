"""Pack several single-turn samples about one image into one sequence that shares the image prefix.

    [BOS system USER: <image>x64]  [turn 1: "\\n" request ASSISTANT: reply </s>]  [turn 2 ...] ...

Each turn attends to the shared prefix and to itself only (a block mask), with position ids that restart after
the prefix, so every turn sees exactly what a single-turn query sees at inference, while the image is encoded
once and the prefix computed once. Token ids come from rendering each sample with the same `Conversation` the
pipeline renders, so training and inference tokenise identically (checked here, not assumed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vitron_ros.core.conversation import IMAGE_TOKEN, SKETCH_TOKEN, Conversation, Turn

from ..shapes.instructions import Sample
from ..shapes.world import Scene

SEG_TASKS = ("referring", "grounded", "grounded_qa")  # tasks whose [SEG] embeddings the synergy discriminator sees


@dataclass
class SegTarget:
    scene: int  # index in the batch
    position: int  # sequence position of the [SEG] token (its hidden state is the signal)
    object_index: int
    task: int  # index into SEG_TASKS


@dataclass
class SketchSlot:
    scene: int
    position: int  # sequence position of the <sketch> placeholder
    object_index: int


@dataclass
class PackedBatch:
    input_ids: np.ndarray  # (B, T) int64, padded with the tokenizer's pad id
    position_ids: np.ndarray  # (B, T) int64
    attention: np.ndarray  # (B, T, T) bool, True where row may attend to column
    image_start: int  # first image slot (the same for every sequence: the prefix is shared)
    image_tokens: int
    label_scene: np.ndarray  # (L,) rows of the reply tokens to predict
    label_position: np.ndarray  # (L,) position whose output predicts the token (the token's position - 1)
    label_token: np.ndarray  # (L,) token id to predict
    label_sample: np.ndarray  # (L,) which sample (flat index over the batch) the token belongs to
    sample_tasks: list[str]
    segs: list[SegTarget] = field(default_factory=list)
    sketches: list[SketchSlot] = field(default_factory=list)


class Packer:
    def __init__(self, tokenizer, system_prompt: str, image_tokens: int):
        self.tokenizer = tokenizer
        self.system = system_prompt
        self.image_tokens = image_tokens
        self.image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.sketch_id = tokenizer.convert_tokens_to_ids(SKETCH_TOKEN)
        self.seg_id = tokenizer.convert_tokens_to_ids("[SEG]")
        self.pad_id = tokenizer.pad_token_id
        self.eos = tokenizer.eos_token

    def user_text(self, sample: Sample) -> str:
        """The user turn as the pipeline writes it: request, then one "Region i: <sketch>" per sketch."""
        placeholders = " ".join(f"Region {i + 1}: {SKETCH_TOKEN}" for i in range(len(sample.sketches)))
        return f"{sample.request.strip()} {placeholders}".strip()

    def sample_ids(self, sample: Sample) -> tuple[list[int], int]:
        """(token ids of the whole exchange, length of its prompt part)."""
        turn = Turn(user=self.user_text(sample))
        prompt = Conversation(system=self.system, turns=[turn]).render(eos=self.eos)
        turn.assistant = sample.reply
        full = Conversation(system=self.system, turns=[turn]).render(eos=self.eos)
        prompt_ids = self.tokenizer(prompt)["input_ids"]
        full_ids = self.tokenizer(full)["input_ids"]
        if full_ids[: len(prompt_ids)] != prompt_ids:
            raise ValueError(f"reply tokenisation changes the prompt's tokens: {sample.request!r} / {sample.reply!r}")
        return full_ids, len(prompt_ids)

    def pack(self, scenes: list[Scene], samples: list[list[Sample]]) -> PackedBatch:
        rows, prefix = [], None
        for per_scene in samples:
            turns = []
            for sample in per_scene:
                ids, prompt_len = self.sample_ids(sample)
                at = ids.index(self.image_id)
                if prefix is None:
                    prefix = ids[: at + 1]
                if ids[: at + 1] != prefix:
                    raise ValueError("samples do not share the system + image prefix; one system prompt per batch")
                turns.append((ids[at + 1 :], prompt_len - (at + 1), sample))
            rows.append(turns)
        image_start = len(prefix) - 1
        prefix_ids = prefix[:-1] + [self.image_id] * self.image_tokens
        p = len(prefix_ids)
        lengths = [p + sum(len(t[0]) for t in turns) for turns in rows]
        total = max(lengths)
        batch = len(rows)
        input_ids = np.full((batch, total), self.pad_id, np.int64)
        position_ids = np.zeros((batch, total), np.int64)
        attention = np.zeros((batch, total, total), bool)
        labels: list[tuple[int, int, int, int]] = []
        tasks: list[str] = []
        segs, sketches = [], []
        causal_prefix = np.tril(np.ones((p, p), bool))
        for b, turns in enumerate(rows):
            input_ids[b, :p] = prefix_ids
            position_ids[b, :p] = np.arange(p)
            attention[b, :p, :p] = causal_prefix
            start = p
            for ids, reply_from, sample in turns:
                n = len(ids)
                end = start + n
                input_ids[b, start:end] = ids
                position_ids[b, start:end] = np.arange(p, p + n)
                attention[b, start:end, :p] = True
                attention[b, start:end, start:end] = np.tril(np.ones((n, n), bool))
                sample_index = len(tasks)
                tasks.append(sample.task)
                labels += [(b, start + j - 1, ids[j], sample_index) for j in range(reply_from, n)]
                seg_positions = [start + j for j in range(reply_from, n) if ids[j] == self.seg_id]
                if len(seg_positions) != len(sample.seg_targets):
                    raise ValueError(f"{sample.task} reply has {len(seg_positions)} [SEG] but {len(sample.seg_targets)} targets")
                for position, obj in zip(seg_positions, sample.seg_targets, strict=True):
                    # an edit's [SEG] refers to one object, as a referring expression's does
                    task = SEG_TASKS.index(sample.task if sample.task in SEG_TASKS else "referring")
                    segs.append(SegTarget(b, position, obj, task))
                sketch_positions = [start + j for j in range(reply_from) if ids[j] == self.sketch_id]
                if len(sketch_positions) != len(sample.sketch_targets):
                    raise ValueError(f"{len(sketch_positions)} <sketch> slots for {len(sample.sketch_targets)} sketches")
                sketches += [SketchSlot(b, pos, obj) for pos, obj in zip(sketch_positions, sample.sketch_targets, strict=True)]
                start = end
            for pad in range(start, total):  # padding attends to itself only, so no row is fully masked
                attention[b, pad, pad] = True
        label = np.asarray(labels, np.int64).reshape(-1, 4)
        return PackedBatch(
            input_ids=input_ids,
            position_ids=position_ids,
            attention=attention,
            image_start=image_start,
            image_tokens=self.image_tokens,
            label_scene=label[:, 0],
            label_position=label[:, 1],
            label_token=label[:, 2],
            label_sample=label[:, 3],
            sample_tasks=tasks,
            segs=segs,
            sketches=sketches,
        )
