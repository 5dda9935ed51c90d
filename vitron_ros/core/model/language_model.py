"""What the pipeline asks of a language model, and the registry of LLM backends.

The pipeline, the evaluation suites and the node go through this protocol only; `transformers` (VitronLLM) is the one
backend today. Another runtime (TensorRT-LLM, llama.cpp) is a class with these members plus an entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from ..config import LlmConfig, RuntimeConfig
from ..conversation import Conversation
from ..errors import VitronInputError
from .families import CheckpointFamily


class LanguageModel(Protocol):
    config: LlmConfig  # resolved against the checkpoint's facts (model/facts.py): box_format is always set
    device: str
    clip_frames: int  # frames per clip its video encoder was taught on (the default clip sampling)
    box_prompt: bool  # its segmenter takes a reply's <Region> box beside the [SEG] signal (False: the signal alone)
    family: CheckpointFamily  # how it is prompted and answers (families.py)

    @property
    def hidden_size(self) -> int: ...  # width of the LM's hidden states ([SEG] signals)

    @property
    def prompt_dim(self) -> int | None: ...  # width the signal projector writes; None: no VITRON heads

    def encode_image(self, image: np.ndarray): ...  # (H, W, 3) uint8 RGB -> ImageEncoding

    def encode_video(self, frames: list[np.ndarray]): ...  # T frames -> ImageEncoding (time-pooled)

    def build_prompt(self, conversation: Conversation, encoding): ...  # -> PromptInputs

    # the reply and its [SEG] signals in one call (vitron_llm.LlmReply): generated under `grammar` (a ReplyGrammar,
    # when the profile's llm.grammar is on), or `written` given (teacher forcing); stage(name) times the signal forward
    def answer(self, prompt, grammar=None, on_text=None, written: str | None = None, stage=None): ...

    @property
    def has_seg_token(self) -> bool: ...  # its replies can hold [SEG] (a token with a hidden state behind it)

    def encoders(self) -> dict: ...  # encoder name -> backends.Encoder

    def modules(self) -> list: ...  # torch modules holding its weights (memory accounting)


def _transformers(config: LlmConfig, runtime: RuntimeConfig, device: str, fetch_hint: str, progress) -> LanguageModel:
    from .vitron_llm import VitronLLM

    return VitronLLM.from_pretrained(config, device=device, fetch_hint=fetch_hint, runtime=runtime, progress=progress)


LLM_BACKENDS: dict[str, Callable[..., LanguageModel]] = {"transformers": _transformers}


def load_language_model(config: LlmConfig, runtime: RuntimeConfig, device: str, fetch_hint: str = "",
                        progress=print) -> LanguageModel:
    if config.backend not in LLM_BACKENDS:
        raise VitronInputError(f"llm.backend {config.backend!r}: expected one of {sorted(LLM_BACKENDS)}")
    return LLM_BACKENDS[config.backend](config, runtime, device, fetch_hint, progress)
