"""GLaMM (mbzuai-oryx/groundingLMM; MBZUAI/GLaMM-FullScope, -RefSeg, ...) in this project's layout.

GLaMM is LLaVA-1.5 (CLIP ViT-L/336 + Vicuna-7B) + SAM ViT-H with a fine-tuned mask decoder + `text_hidden_fcs`
(Linear(H, H), ReLU, Linear(H, 256)): the [SEG] hidden state prompts SAM as one sparse token. That is VITRON's
signal path, so a GLaMM checkpoint splits into the three parts this project loads: transformers'
`LlavaForConditionalGeneration`, the signal projector (`net.0` / `net.2` of heads.SignalProjector) and
segment_anything's `Sam`. What differs, read from GLaMM's forward (test/fixtures/glamm/README.md):

- the signal is the last-layer hidden state (after the final norm) of the token *before* each [SEG], the one that
  predicts it (LISA's shifted `seg_token_mask`), not the state at [SEG] itself;
- its prompt is `llava_v1` ("A chat between a curious human ...") with
  "The <im_start><image><im_end> provides an overview of the picture.\\n" before the question, and replies
  "Sure, it is [SEG]." (referring) or "<p> phrase </p> [SEG]" (grounded conversation);
- published checkpoints hold no CLIP weights (GLaMM's merge script drops `vision_tower` keys): the tower is
  openai/clip-vit-large-patch14-336, loaded beside them;
- its region encoder (`model.region_encoder.*`, mmcv RoI-align + 4-level features, 299 M parameters at any size) is
  not ported: a user's sketch reaches GLaMM as a box in the text.

Parity with GLaMM's own code at tiny size: test/test_glamm_parity.py against test/fixtures/glamm.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointLoadError

GROUNDING_PREFIX = "model.grounding_encoder."  # segment_anything Sam keys below it
PROJECTOR_PREFIX = "model.text_hidden_fcs.0."  # Sequential(Linear, ReLU, Linear, Dropout): .0 and .2
IMAGE_TOKEN_INDEX = -200  # LLaVA's placeholder id in GLaMM's input ids
SIGNAL_OFFSET = -1  # GLaMM reads the hidden state one position before each [SEG]
GLAMM_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives "
                "helpful, detailed, and polite answers to the human's questions.")
GLAMM_IMAGE_PREFIX = "The <im_start><image><im_end> provides an overview of the picture.\n"


@dataclass
class GlammParts:
    """A GLaMM state dict split by destination; `dropped` lists the keys no part takes, and why not."""

    llava: dict = field(default_factory=dict)  # LlavaForConditionalGeneration keys (no vision tower)
    sam: dict = field(default_factory=dict)  # segment_anything Sam keys
    projector: dict = field(default_factory=dict)  # heads.SignalProjector keys (net.0.*, net.2.*)
    dropped: dict = field(default_factory=dict)  # key -> reason


def split_glamm_state(state: dict) -> GlammParts:
    """GLaMM's key names -> this project's parts. Unknown keys raise: a checkpoint of another layout is refused."""
    parts = GlammParts()
    for key, value in state.items():
        if key.startswith(GROUNDING_PREFIX):
            parts.sam[key[len(GROUNDING_PREFIX):]] = value
        elif key.startswith(PROJECTOR_PREFIX):
            parts.projector["net." + key[len(PROJECTOR_PREFIX):]] = value
        elif key.startswith("model.mm_projector."):
            index, rest = key[len("model.mm_projector."):].split(".", 1)
            if index not in ("0", "2"):
                raise CheckpointLoadError(f"GLaMM checkpoint: unexpected projector key {key!r} (mlp2x_gelu has 0, 2)")
            parts.llava[f"model.multi_modal_projector.linear_{1 if index == '0' else 2}.{rest}"] = value
        elif key == "lm_head.weight":
            parts.llava[key] = value
        elif key.startswith("model.region_encoder."):
            parts.dropped[key] = "region encoder not ported (sketches reach GLaMM as text boxes)"
        elif key.endswith(".rotary_emb.inv_freq"):
            parts.dropped[key] = "rotary frequencies are recomputed by transformers"
        elif "vision_tower" in key:
            parts.dropped[key] = "the CLIP tower loads from its own folder"
        elif key.startswith(("model.embed_tokens.", "model.layers.", "model.norm.")):
            parts.llava["model.language_model." + key[len("model."):]] = value
        else:
            raise CheckpointLoadError(f"GLaMM checkpoint: key {key!r} belongs to no part this converter knows")
    for name, part in (("grounding encoder (SAM)", parts.sam), ("text_hidden_fcs", parts.projector),
                       ("language model", parts.llava)):
        if not part:
            raise CheckpointLoadError(f"GLaMM checkpoint has no {name} weights: not a GLaMM checkpoint")
    return parts


def llava_config(glamm: dict, clip_vision: dict):
    """transformers' LlavaConfig for GLaMM's LLaVA: its LLaMA sizes, the CLIP tower's, one extra vocabulary row for
    the `<image>` placeholder id transformers needs (never looked up: image features replace it)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    if glamm.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
        raise CheckpointLoadError(f"GLaMM projector {glamm.get('mm_projector_type')!r}: only mlp2x_gelu is supported")
    if glamm.get("mm_vision_select_feature", "patch") != "patch":
        raise CheckpointLoadError("GLaMM vision features other than 'patch' are not supported")
    text = LlamaConfig(
        vocab_size=glamm["vocab_size"] + 1, hidden_size=glamm["hidden_size"],
        intermediate_size=glamm["intermediate_size"], num_hidden_layers=glamm["num_hidden_layers"],
        num_attention_heads=glamm["num_attention_heads"],
        num_key_value_heads=glamm.get("num_key_value_heads", glamm["num_attention_heads"]),
        rms_norm_eps=glamm["rms_norm_eps"], max_position_embeddings=glamm["max_position_embeddings"],
        tie_word_embeddings=False, bos_token_id=glamm.get("bos_token_id", 1), eos_token_id=glamm.get("eos_token_id", 2),
        pad_token_id=glamm.get("pad_token_id", 0),
    )
    vision = CLIPVisionConfig(**{key: clip_vision[key] for key in (
        "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size",
        "hidden_act", "layer_norm_eps", "projection_dim") if key in clip_vision})
    return LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=glamm["vocab_size"],
        vision_feature_layer=glamm.get("mm_vision_select_layer", -2), vision_feature_select_strategy="default",
        projector_hidden_act="gelu", multimodal_projector_bias=True,
        image_seq_length=(vision.image_size // vision.patch_size) ** 2,
    )


def build_llava(parts: GlammParts, clip_state: dict, config):
    """LlavaForConditionalGeneration with GLaMM's weights and the CLIP tower's (CLIPVisionModel keys), loaded
    strictly: every key of the model must come from the checkpoint."""
    import torch
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration(config).eval()
    state = dict(parts.llava)
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        weight = state[name]
        state[name] = torch.cat([weight, weight.new_zeros(1, weight.shape[1])])  # the <image> placeholder row
    for key, value in clip_state.items():
        state["model.vision_tower." + key.removeprefix("vision_model.")] = value
    if any(key.startswith("model.vision_tower.vision_model.") for key in model.state_dict()):
        state = {k.replace("model.vision_tower.", "model.vision_tower.vision_model.", 1) if k.startswith(
            "model.vision_tower.") else k: v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointLoadError(f"GLaMM weights do not fit LLaVA: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def signal_positions(token_ids, seg_token_id: int):
    """Positions whose hidden states GLaMM turns into [SEG] embeddings: one before each [SEG] token."""
    import torch

    ids = torch.as_tensor(token_ids)
    return (ids == seg_token_id).nonzero().flatten() + SIGNAL_OFFSET


def _strip_around_added_tokens(tokenizer) -> None:
    """GLaMM was trained and run with transformers 4.31's slow LlamaTokenizer, which dropped the whitespace on both
    sides of an added token ("The <im_start>" -> "The", "<im_start>"); the fast tokenizer does so only when told."""
    from tokenizers import AddedToken

    keep = {tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token, tokenizer.pad_token}
    stripped = [AddedToken(t.content, lstrip=True, rstrip=True, special=t.special, normalized=False)
                for t in tokenizer.added_tokens_decoder.values() if t.content not in keep]
    tokenizer.backend_tokenizer.add_special_tokens([t for t in stripped if t.special])
    tokenizer.backend_tokenizer.add_tokens([t for t in stripped if not t.special])


def read_weights(folder: Path) -> dict:
    """Every weight file of a checkpoint folder (GLaMM's or CLIP's; sharded .safetensors or .bin, read safely),
    merged."""
    from .weights import read_state_dict

    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise CheckpointLoadError(f"{folder} holds no .safetensors or pytorch_model*.bin weights")
    state: dict = {}
    for path in files:
        state.update(read_state_dict(path))
    return state


def convert_glamm(glamm_folder: str | os.PathLike, clip_folder: str | os.PathLike, out_folder: str | os.PathLike,
                  progress=print) -> Path:
    """A GLaMM checkpoint folder (its config.json, weights and LLaMA tokenizer) and its CLIP tower's folder ->
    `out_folder/llava` (LLaVA in transformers + the signal projector as VITRON heads + vitron_facts.json naming the
    glamm family) and `out_folder/sam.safetensors` (its SAM, fine-tuned mask decoder included). Returns out_folder.

    Reading a sentencepiece tokenizer needs the `sentencepiece` package (pip install vitron_ros[convert]); the
    converted folder carries a fast tokenizer, so the runtime does not.
    """
    import json

    from safetensors.torch import save_file
    from transformers import AutoTokenizer, CLIPImageProcessor, LlavaProcessor

    from ..conversation import IMAGE_TOKEN
    from .facts import TrainedWith, write_facts
    from .heads import HeadsConfig, build_heads, save_heads
    from .weights import replacing_folder

    glamm_folder, clip_folder, out_folder = Path(glamm_folder), Path(clip_folder), Path(out_folder)
    try:
        config = json.loads((glamm_folder / "config.json").read_text())
        clip_config = json.loads((clip_folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointLoadError(f"cannot read a GLaMM or CLIP config.json: {exc}") from None
    clip_config = clip_config.get("vision_config", clip_config)  # a full CLIPModel folder (openai/clip-vit-*)
    progress(f"converting GLaMM {glamm_folder} (+ CLIP {clip_folder}) -> {out_folder}")
    parts = split_glamm_state(read_weights(glamm_folder))
    # the tower's weights only: a full CLIPModel folder also holds the text tower and both projections
    clip_state = {k: v for k, v in read_weights(clip_folder).items() if k.startswith("vision_model.")}
    model = build_llava(parts, clip_state, llava_config(config, clip_config))
    try:
        tokenizer = AutoTokenizer.from_pretrained(glamm_folder)
    except Exception as exc:
        raise CheckpointLoadError(f"cannot read GLaMM's tokenizer in {glamm_folder} ({type(exc).__name__}: {exc}); "
                                  "its sentencepiece model needs `pip install sentencepiece`") from None
    if len(tokenizer) != config["vocab_size"]:
        raise CheckpointLoadError(f"GLaMM tokenizer has {len(tokenizer)} tokens, its config {config['vocab_size']}")
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)  # the placeholder row build_llava appended
    if tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) != model.config.image_token_id:
        raise CheckpointLoadError("GLaMM tokenizer: the <image> placeholder did not land on the appended row")
    _strip_around_added_tokens(tokenizer)
    image_processor = CLIPImageProcessor.from_pretrained(clip_folder)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               patch_size=model.config.vision_config.patch_size,
                               vision_feature_select_strategy="default")
    heads = build_heads(HeadsConfig(hidden_size=config["hidden_size"], prompt_dim=config["out_dim"],
                                    sketch_encoder=False))
    heads.signal_projector.load_state_dict(parts.projector, strict=True)
    with replacing_folder(out_folder) as staging:
        llava = staging / "llava"
        llava.mkdir()
        model.save_pretrained(llava)
        processor.save_pretrained(llava)
        save_heads(heads, llava)
        write_facts(llava, TrainedWith(
            family="glamm", box_format="normalized", box_prompt=False,
            provenance={"converted_from": str(glamm_folder), "clip": str(clip_folder),
                        "dropped": sorted(set(parts.dropped.values()))}))
        save_file({k: v.contiguous() for k, v in parts.sam.items()}, str(staging / "sam.safetensors"))
    progress(f"converted GLaMM: {sum(v.numel() for v in parts.llava.values()) / 1e6:.1f} M LLM parameters, "
             f"{sum(v.numel() for v in parts.sam.values()) / 1e6:.1f} M SAM parameters")
    return out_folder
