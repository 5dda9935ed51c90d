"""The VITRON language model: a LLaVA-family checkpoint (vision tower + projector + causal LM) through
transformers, plus VITRON's sketch encoder and signal projector when the checkpoint carries them.

Image and sketch embeddings are spliced into `inputs_embeds` here rather than by the processor, because sketch
placeholders have no counterpart in transformers' LLaVA and both kinds must share one code path.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import LlmConfig
from ..conversation import IMAGE_TOKEN, SKETCH_TOKEN, Conversation, Region
from ..backends import Exportable
from ..errors import CheckpointLoadError, CheckpointNotFoundError, VitronInputError
from ..geometry import Letterbox
from ..video import ClipSampling
from ..reply_grammar import BOX_STYLES, ReplyGrammar
from .constrained import GRACE_TOKENS, GrammarDecoding
from .facts import TrainedWith, agree, read_facts
from .families import checkpoint_family
from .heads import load_heads, region_grid_weights
from .video_pooling import named_pooling


@dataclass
class ImageEncoding:
    """Projected patch features of one image, as the LLM sees it."""

    features: object  # torch.Tensor (M, D) in LLM width D: an image's grid * grid patches, row-major (y, x); a clip's
    # M tokens start with those patches time-pooled (video_pooling.py)
    grid: int
    letterbox: Letterbox
    frames: int = 1  # a clip's encoding: grid * grid time-pooled patches, then its pooling's per-frame tokens

    @property
    def spatial(self):
        """The grid * grid patch features (time-pooled for a clip): what regions are pooled from."""
        return self.features[: self.grid * self.grid]


@dataclass
class LlmReply:
    """One answer of the LLM, everything the pipeline needs from it: the text, its ids and its [SEG] signals."""

    text: str  # the reply with [SEG] kept (the parser reads it)
    ids: list[int]  # its token ids, without EOS
    signals: np.ndarray  # (S, hidden_size) float32: the LM's last hidden states at the family's [SEG] positions
    embeddings: np.ndarray  # (S, prompt_dim) float32: `signals` through the trained projector; (0, 0) without one


@dataclass
class PromptInputs:
    embeds: object  # torch.Tensor (T, D) prompt embeddings with image and sketch features spliced in
    ids: list[int]  # the T token ids behind `embeds` (image placeholder repeated once per patch)

    @property
    def token_count(self) -> int:
        return len(self.ids)


def resolve_model_path(model: str, revision: str | None, fetch_hint: str, what: str = "LLM checkpoint") -> Path:
    """A local folder as is; a hub id through the local Hugging Face cache only (robots run offline)."""
    path = Path(os.path.expanduser(model))
    if path.is_dir():
        return path
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") != 1:
        raise CheckpointNotFoundError(f"{what} folder not found: {model}; {fetch_hint}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, revision=revision, local_files_only=True))
    except Exception:
        raise CheckpointNotFoundError(f"{what} {model!r} is not in the local cache; {fetch_hint}") from None


class VitronLLM:
    """The `transformers` LLM backend (see language_model.LanguageModel for what the pipeline asks of it)."""

    def __init__(self, model, processor, heads, config: LlmConfig, device: str = "cpu", runtime=None, progress=print,
                 facts: TrainedWith | None = None):
        import torch

        from ..backends import load_encoder
        from ..config import RuntimeConfig

        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.heads = heads.to(device=device, dtype=model.dtype).eval() if heads is not None else None
        self.config = config
        facts = facts or TrainedWith()  # what the checkpoint was trained with (none: VITRON's defaults)
        self.clip_frames = facts.clip_frames or ClipSampling().frames  # frames per clip the video encoder was taught on
        self.box_prompt = facts.box_prompt is not False  # the segmenter was trained with the reply's box beside [SEG]
        self.video_pooling = named_pooling(facts.video_pooling)  # how its video encoder turns clips into tokens
        # how it is prompted and answers (families.py): the profile's or the checkpoint's word, else VITRON's
        self.family = checkpoint_family(agree("family", config.family, facts.family, "LLM checkpoint"))
        self.device = device
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if self.image_token_id is None or self.image_token_id == self.tokenizer.unk_token_id:
            raise CheckpointLoadError(f"tokenizer has no {IMAGE_TOKEN} token; not a LLaVA-family checkpoint")
        has_sketch = heads is not None and heads.sketch_encoder is not None
        self.sketch_token_id = self._special_id(SKETCH_TOKEN) if has_sketch else None
        self.seg_token_id = self._special_id(heads.config.seg_token) if heads is not None else None
        self._embed = model.get_input_embeddings()
        self._torch = torch
        self._grammar_decoding: GrammarDecoding | None = None
        dtype = str(model.dtype).removeprefix("torch.")
        # the CLIP vision tower + projector: the LLM's heavy encoder, on the profile's backend
        self.vision = load_encoder(clip_vision_export(model), runtime or RuntimeConfig(), device, dtype, progress)

    def _special_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise CheckpointLoadError(f"checkpoint has VITRON heads but its tokenizer lacks the {token} token")
        return token_id

    @classmethod
    def from_pretrained(cls, config: LlmConfig, device: str = "cpu", fetch_hint: str = "", runtime=None,
                        progress=print) -> VitronLLM:
        import torch
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        path = resolve_model_path(config.model, config.revision, fetch_hint)
        facts = read_facts(path)  # checked before the weights load: a checkpoint this version cannot read fails fast
        where = f"LLM checkpoint {path}"
        named_pooling(facts.video_pooling, where)
        name = runtime.dtype_for(config.dtype, device) if runtime is not None else config.dtype
        dtype = getattr(torch, name) if device.startswith("cuda") else torch.float32
        try:
            processor = AutoProcessor.from_pretrained(path)
            model = LlavaForConditionalGeneration.from_pretrained(path, dtype=dtype).to(device)
        except Exception as exc:
            raise CheckpointLoadError(f"cannot load LLaVA checkpoint {path}: {type(exc).__name__}: {exc}") from None
        config = dataclasses.replace(
            config,
            box_format=agree("box_format", config.box_format, facts.box_format, where) or "normalized",
            system_prompt=agree("system_prompt", config.system_prompt, facts.system_prompt, where),
            family=agree("family", config.family, facts.family, where),
        )
        return cls(model, processor, load_heads(path), config, device, runtime, progress, facts)

    def encoders(self) -> dict:
        return {self.vision.name: self.vision}

    def exportables(self) -> list:
        """Trace-friendly wrappers of its heavy networks (for `vitron engines build` and export checks)."""

        return [clip_vision_export(self.model)]

    def modules(self) -> list:
        return [m for m in (self.model, self.heads) if m is not None]

    @property
    def prompt_dim(self) -> int | None:
        """Width the signal projector writes (the segmenter's prompt tokens); None without VITRON heads."""
        return None if self.heads is None else int(self.heads.config.prompt_dim)

    @property
    def has_sketch_encoder(self) -> bool:
        return self.heads is not None and self.heads.sketch_encoder is not None

    @property
    def has_signal_projector(self) -> bool:
        return self.heads is not None

    def encode_image(self, image: np.ndarray) -> ImageEncoding:
        """(H, W, 3) uint8 RGB -> projected patch features of the letterboxed square."""
        features, grid, letterbox = self._patch_features([image])
        return ImageEncoding(features=features[0], grid=grid, letterbox=letterbox)

    def encode_video(self, frames: list[np.ndarray]) -> ImageEncoding:
        """T frames of one size -> frame features pooled as the checkpoint was trained (video_pooling.py; VITRON's:
        Video-ChatGPT's). Tokens: the grid * grid patch features averaged over the T frames (what is where), then
        per-frame tokens (what changes when). The LLM reads them where a still image's patches would go.
        """
        features, grid, letterbox = self._patch_features(frames)  # (T, N, D)
        pooled = self.video_pooling.pool(features, grid)
        return ImageEncoding(features=pooled, grid=grid, letterbox=letterbox, frames=len(frames))

    def _patch_features(self, images: list[np.ndarray]):
        """Letterboxed images through the vision tower and projector in one batch -> ((T, N, D), grid, letterbox)."""
        torch = self._torch
        letterbox = Letterbox(*images[0].shape[:2])
        image_processor = self.processor.image_processor
        fill = [int(round(255 * m)) for m in image_processor.image_mean]  # LLaVA-1.5 pads with the mean colour
        # letterboxed as LLaVA-1.5 was trained ("pad"); a family trained without it gets the processor's own resize
        squares = [letterbox.pad_image(image, fill) for image in images] if self.family.letterbox else list(images)
        pixel_values = image_processor(images=squares, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            (features,) = self.vision(pixel_values.to(self.device, self.model.dtype))
        features = features.to(self.model.dtype)
        grid = math.isqrt(features.shape[1])
        if grid * grid != features.shape[1]:
            raise CheckpointLoadError(f"vision tower gives {features.shape[1]} tokens, not a square patch grid")
        return features, grid, letterbox

    def sketch_embeddings(self, encoding: ImageEncoding, regions: list[Region]):
        """One (D,) embedding per region: features pooled inside its mask plus its box location."""
        torch = self._torch
        if not regions:
            return torch.zeros((0, encoding.features.shape[1]), dtype=encoding.features.dtype, device=self.device)
        rows = []
        with torch.inference_mode():
            for region in regions:
                weights = region_grid_weights(encoding.letterbox.pad_mask(region.mask), encoding.grid).reshape(-1)
                box = encoding.letterbox.box_to_normalized(region.box_xyxy)
                rows.append(
                    self.heads.sketch_encoder(
                        encoding.spatial,
                        torch.as_tensor(weights, device=self.device),
                        torch.as_tensor(box, dtype=torch.float32, device=self.device),
                    )
                )
        return torch.stack(rows)

    def region_as_text(self, region: Region, letterbox: Letterbox) -> str:
        """How a region reaches an LLM without a sketch encoder: its box in the LLM's own box format."""
        if self.config.box_format == "pixel":
            values = [round(v) for v in region.box_xyxy]
            return "[" + ", ".join(str(v) for v in values) + "]"
        value = BOX_STYLES[self.family.box_style]  # as the checkpoint writes boxes ("0.3" for LLaVA-1.5)
        normalized = [min(max(v, 0.0), 1.0) for v in letterbox.box_to_normalized(region.box_xyxy)]
        return "[" + ", ".join(value(round(v * 100)) for v in normalized) + "]"

    def build_prompt(self, conversation: Conversation, encoding: ImageEncoding) -> PromptInputs:
        """Render the conversation, tokenize it, and splice image and sketch features into the embeddings."""
        torch = self._torch
        regions = conversation.regions
        text = conversation.render(eos=self.tokenizer.eos_token or "")
        if not self.has_sketch_encoder:
            for region in regions:
                text = text.replace(SKETCH_TOKEN, self.region_as_text(region, encoding.letterbox), 1)
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        if ids.count(self.image_token_id) != 1:
            raise VitronInputError(f"prompt must hold exactly one {IMAGE_TOKEN}, found {ids.count(self.image_token_id)}")
        at = ids.index(self.image_token_id)
        n_patches = encoding.features.shape[0]
        ids = ids[:at] + [self.image_token_id] * n_patches + ids[at + 1 :]
        context = int(getattr(self.model.config.get_text_config(), "max_position_embeddings", 0) or 0)
        if context and len(ids) + self.config.max_new_tokens > context:
            raise VitronInputError(
                f"the prompt is {len(ids)} tokens (image {n_patches}); with up to {self.config.max_new_tokens} reply "
                f"tokens it does not fit the model's context of {context}: shorten the request or the conversation"
            )
        id_tensor = torch.as_tensor(ids, device=self.device)
        with torch.inference_mode():
            embeds = self._embed(id_tensor).clone()
            embeds[at : at + n_patches] = encoding.features.to(embeds.dtype)
            if self.has_sketch_encoder:
                slots = (id_tensor == self.sketch_token_id).nonzero().flatten()
                if len(slots) != len(regions):
                    raise VitronInputError(f"{len(regions)} regions but {len(slots)} {SKETCH_TOKEN} placeholders")
                if len(regions):
                    embeds[slots] = self.sketch_embeddings(encoding, regions).to(embeds.dtype)
        return PromptInputs(embeds=embeds, ids=ids)

    def generate(self, prompt: PromptInputs, on_text=None, grammar: ReplyGrammar | None = None) -> tuple[str, list[int]]:
        """Greedy answer -> (reply text with [SEG] kept, reply token ids without EOS).

        `on_text(reply_so_far)` is called after every new token (streaming to an action's feedback); an exception
        it raises (e.g. QueryCancelled) stops generation and propagates. With `grammar` (and the profile's
        `llm.grammar` on), every token is one the grammar allows, so the reply parses (model/constrained.py).
        """
        from transformers import LogitsProcessorList, StoppingCriteriaList

        torch = self._torch
        tok = self.tokenizer
        session = None
        max_new_tokens = self.config.max_new_tokens
        extra = {}
        if grammar is not None and self.config.grammar:
            session = self.grammar_decoding().session(grammar, max_new_tokens, self.vocab_size)
            max_new_tokens += GRACE_TOKENS
            extra = {"logits_processor": LogitsProcessorList([session]),
                     "stopping_criteria": StoppingCriteriaList([session.stopper()])}
        with torch.inference_mode():
            out = self.model.generate(
                streamer=_ReplyStreamer(self, on_text) if on_text is not None else None,
                inputs_embeds=prompt.embeds[None],
                attention_mask=torch.ones((1, prompt.token_count), dtype=torch.long, device=self.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                eos_token_id=tok.eos_token_id,
                **extra,
            )
        reply_ids = out[0].tolist()
        if tok.eos_token_id in reply_ids:
            reply_ids = reply_ids[: reply_ids.index(tok.eos_token_id)]
        if session is not None:
            reply_ids = reply_ids[: session.complete_length(len(reply_ids))]
        return self.decode(reply_ids), reply_ids

    def answer(self, prompt: PromptInputs, grammar=None, on_text=None, written: str | None = None,
               stage=None) -> LlmReply:
        """The reply to `prompt` and its [SEG] signals, in one call: generated (under `grammar`), or `written` given
        (teacher forcing: evaluation, training, replaying a logged answer). `stage(name)`, a context manager, times
        the signal forward ("signal_forward") when the reply holds a [SEG]."""
        import contextlib

        if written is None:
            text, ids = self.generate(prompt, on_text=on_text, grammar=grammar)
        else:
            text, ids = written, self.encode_reply(written)
        signals = np.zeros((0, self.hidden_size), np.float32)
        embeddings = np.zeros((0, 0), np.float32)
        if self.seg_token_id is not None and self.seg_token_id in ids:
            with (stage("signal_forward") if stage is not None else contextlib.nullcontext()):
                signals = self.signal_hidden_states(prompt, ids)
                embeddings = self.project_signals(signals)
        return LlmReply(text, ids, signals, embeddings)

    def grammar_decoding(self) -> GrammarDecoding:
        """The tokenizer's compiled-grammar cache (built on first use: llguidance reads the whole vocabulary)."""
        if self._grammar_decoding is None:
            self._grammar_decoding = GrammarDecoding(self.tokenizer, self.seg_token_id)
        return self._grammar_decoding

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def has_seg_token(self) -> bool:
        return self.seg_token_id is not None

    def decode(self, ids: list[int]) -> str:
        # Placeholders and padding never belong in an answer; [SEG] does (the parser reads it).
        drop = {self.image_token_id, self.sketch_token_id, self.tokenizer.pad_token_id, self.tokenizer.bos_token_id}
        return self.tokenizer.decode([i for i in ids if i not in drop], skip_special_tokens=False)

    def encode_reply(self, text: str) -> list[int]:
        """Token ids of a given reply (teacher forcing: training, and grounding a reply written elsewhere)."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.get_text_config().hidden_size)

    def signal_hidden_states(self, prompt: PromptInputs, reply_ids: list[int]) -> np.ndarray:
        """The LM's last hidden states at the reply's [SEG] tokens, unprojected: (S, hidden_size) float32."""
        torch = self._torch
        # the family's signal position: at each [SEG], or at the token before it (GLaMM, LISA), which may be the
        # prompt's last token
        positions = [i + self.family.signal_offset for i, t in enumerate(reply_ids) if t == self.seg_token_id]
        if not positions:
            return np.zeros((0, self.hidden_size), np.float32)
        with torch.inference_mode():
            reply = self._embed(torch.as_tensor(reply_ids, device=self.device))
            full = torch.cat([prompt.embeds, reply.to(prompt.embeds.dtype)])[None]
            hidden = self.model.model(inputs_embeds=full).last_hidden_state[0]
            return hidden[[prompt.token_count + p for p in positions]].float().cpu().numpy()

    def project_signals(self, hidden: np.ndarray) -> np.ndarray:
        """[SEG] hidden states (S, hidden_size) -> the segmenter's prompt space (S, prompt_dim) by the trained head."""
        torch = self._torch
        if self.heads is None:
            return np.zeros((0, 0), np.float32)
        if len(hidden) == 0:
            return np.zeros((0, self.heads.config.prompt_dim), np.float32)
        with torch.inference_mode():
            weight = next(self.heads.signal_projector.parameters())
            tensor = torch.as_tensor(hidden, device=weight.device, dtype=weight.dtype)
            return self.heads.signal_projector(tensor).float().cpu().numpy()

    def signal_embeddings(self, prompt: PromptInputs, reply_ids: list[int]) -> np.ndarray:
        """Hidden states at the reply's [SEG] tokens, projected into the segmenter's prompt space: (S, prompt_dim)."""
        if self.heads is None:
            return np.zeros((0, 0), np.float32)
        return self.project_signals(self.signal_hidden_states(prompt, reply_ids))


class _ReplyStreamer:
    """transformers streamer interface (put / end): decodes the reply so far after each generated token."""

    def __init__(self, llm: VitronLLM, on_text):
        self.llm, self.on_text, self.ids = llm, on_text, []

    def put(self, value):
        # With inputs_embeds, generate first puts the (empty) prompt ids, then one token per step.
        self.ids.extend(int(t) for t in value.reshape(-1).tolist())
        if self.ids:
            eos = self.llm.tokenizer.eos_token_id
            self.on_text(self.llm.decode([t for t in self.ids if t != eos]))

    def end(self):
        pass


# -- exports: trace-friendly wrappers for the backends (ONNX Runtime, TensorRT), checked in tests/test_backends.py --

def clip_vision_export(llava, frames: int = 2, max_frames: int = 16) -> Exportable:
    """LLaVA's image features: (T, 3, S, S) pixel values -> (T, N, D) projected patch features in LLM width.

    The example holds two frames: an exporter specialises an axis it sees at size 1."""
    import torch
    from torch import nn
    cfg = llava.config
    layers = cfg.vision_feature_layer if isinstance(cfg.vision_feature_layer, (list, tuple)) else [cfg.vision_feature_layer]

    class ClipVisionExport(nn.Module):
        def __init__(self, vision_tower, projector):
            super().__init__()  # the two parts only: the language model is no part of this export
            self.vision_tower, self.projector = vision_tower, projector

        def forward(self, pixel_values):
            # LlavaModel.get_image_features without its split into a per-image list (which would fix the frame
            # count in the export)
            hidden = self.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
            selected = [hidden.hidden_states[layer] for layer in layers]
            if cfg.vision_feature_select_strategy == "default":
                selected = [states[:, 1:] for states in selected]  # drop CLS
            return self.projector(torch.cat(selected, dim=-1) if len(selected) > 1 else selected[0])

    side = cfg.vision_config.image_size
    return Exportable("clip_vision", ClipVisionExport(llava.model.vision_tower, llava.model.multi_modal_projector).eval(), (torch.randn(frames, 3, side, side),),
                      ("pixel_values",), ("image_features",), dynamic={"pixel_values": {0: "frames"}},
                      shape_range={"frames": (1, 8, max_frames)})
