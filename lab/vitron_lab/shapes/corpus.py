"""Text a ShapesWorld tokenizer learns its merges from: every request and reply form, and every box number."""

from __future__ import annotations

import numpy as np

from .instructions import TOKENIZER_TASKS, VQA_TYPES, InstructionMaker
from .world import generate_scene

CORPUS_SEED = 1_000_000  # scenes far from training and evaluation seeds


def shapes_corpus(scenes: int = 300) -> list[str]:
    rng = np.random.default_rng(CORPUS_SEED)
    texts = [f"0.{i:02d}" for i in range(100)] + ["1.00"]
    for offset in range(scenes):
        maker = InstructionMaker(generate_scene(CORPUS_SEED + offset), rng)
        for task in TOKENIZER_TASKS:
            sample = maker.make(task)
            if sample is not None:
                texts.append(f"USER: {sample.request} Region 1: ASSISTANT: {sample.reply}")
        for question_type in VQA_TYPES:
            sample = maker._vqa(question_type)
            if sample is not None:
                texts.append(f"{sample.request} {sample.reply}")
    return texts
