"""The `tiny` profile: the default architecture in miniature, with random weights, built offline by the lab
(`vitron-lab build-tiny`); the shapes profile's training starts from the same builders at its own sizes.

Everything is written with each library's own save functions (save_pretrained, torch.save of a SAM state dict)
so the pipeline loads it through exactly the code that loads published checkpoints. The runtime never imports
this module: a tiny profile whose weights are missing says which command builds them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vitron_ros.core.config import ProfileConfig
from vitron_ros.core.conversation import IMAGE_TOKEN, SKETCH_TOKEN
from vitron_ros.core.model.facts import TrainedWith, write_facts
from vitron_ros.core.model.heads import HeadsConfig, build_heads, save_heads
from vitron_ros.core.model.sam_loader import TINY_PROMPT_DIM, TinySamSize, build_sam
from vitron_ros.core.model.weights import replacing_folder
from vitron_ros.core.specialists import system_prompt
from vitron_ros.core.video import ClipSampling

from .tiny_diffusion import build_tiny_diffusion_assets
from .tiny_sam2 import build_tiny_sam2
from .tiny_video import build_tiny_video_assets


@dataclass(frozen=True)
class TinyBuildConfig:
    """Sizes of the random-weight miniature built offline (same classes as the real models, smaller)."""

    vision_image_size: int = 112  # CLIP input side; 112 / 16 = 7x7 patch grid
    vision_patch_size: int = 16
    vision_hidden_size: int = 64
    vision_layers: int = 2
    vision_feature_layer: int = -2  # layer LLaVA reads (-2: LLaVA-1.5's choice; -1 wastes no layer when training)
    text_hidden_size: int = 64
    text_layers: int = 2
    text_heads: int = 4
    # std of the LM's token embeddings at init. 0.02 (transformers' default) suits random-weight plumbing; trained
    # from scratch next to projected image features (norm ~30 after training) unit scale keeps the two comparable.
    text_embedding_std: float = 0.02
    vocab_size: int = 600  # byte-level BPE trained in memory on the prompt vocabulary
    sam_image_size: int = 256  # SAM input side; 256 / 16 = 16x16 image embedding
    sam_patch_size: int = 16  # SAM's patch; the mask decoder's low-res masks are 4x the patch grid
    sam_embed_dim: int = 64
    sam_depth: int = 2
    sam_heads: int = 2
    seed: int = 0  # random weights are seeded so the tiny profile is reproducible
    tokenizer_corpus: str = "generic"  # text the byte-level BPE is trained on: "generic" or "shapes" (ShapesWorld)
    synergy_dim: int = 0  # width of each of the signal projector's task-invariant / task-specific parts (0: none)
    sam2_image_size: int = 128  # SAM 2 tracker input side; its memory attends over a (side / 16)^2 grid

    def sam_size(self) -> TinySamSize:
        return TinySamSize(self.sam_image_size, self.sam_patch_size, self.sam_embed_dim, self.sam_depth, self.sam_heads)

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", IMAGE_TOKEN, SKETCH_TOKEN, "[SEG]"]

# Enough text for a byte-level BPE to learn the words requests and the invocation format use.
_CORPUS = [
    "USER: what is on the table? ASSISTANT: a red mug and a plate.",
    "segment the red mug. Sure, it is [SEG].",
    "<p> the red mug </p> [SEG] is left of <p> the blue plate </p> [SEG].",
    "<module>segmenter</module> <instruction>segmentation: the person</instruction> <Region>[0.12, 0.30, 0.45, 0.88]</Region>",
    "<module>segmenter</module> <instruction>everything: all objects</instruction>",
    "what is this? It is a circle, a square, a triangle. red green blue yellow white black large small left right above below",
    "0 1 2 3 4 5 6 7 8 9 0.25 0.50 0.75 1.00, ( ) [ ] : ; . ? !",
]


def tokenizer_corpus(name: str) -> list[str]:
    """Text a tiny tokenizer learns its merges from: the prompt vocabulary, or ShapesWorld's instruction data."""
    corpus = [system_prompt(), *_CORPUS]  # VITRON's system turn with every registered specialist
    if name == "generic":
        return corpus * 4
    if name == "shapes":
        from .shapes.corpus import shapes_corpus

        return corpus + shapes_corpus()
    raise ValueError(f"unknown tokenizer corpus {name!r}; expected 'generic' or 'shapes'")


def train_tokenizer(vocab_size: int, corpus: str = "generic"):
    """A byte-level BPE (any text encodes) with LLaVA's and VITRON's special tokens, as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_corpus(corpus), trainer=trainer)
    from tokenizers.processors import TemplateProcessing

    bos_id = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens=[IMAGE_TOKEN, SKETCH_TOKEN, "[SEG]"],
    )


def build_tiny_llava(cfg: TinyBuildConfig, folder: Path) -> int:
    """Write a random tiny LLaVA (CLIP vision + projector + Llama), its processor and VITRON heads; returns hidden size."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = train_tokenizer(cfg.vocab_size, cfg.tokenizer_corpus)
    side = cfg.vision_image_size
    grid = side // cfg.vision_patch_size
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=cfg.vision_hidden_size,
            intermediate_size=cfg.vision_hidden_size * 4,
            # LLaVA reads layer `vision_feature_layer`; build the layers after it too, as the published towers have
            num_hidden_layers=cfg.vision_layers - 1 - cfg.vision_feature_layer,
            num_attention_heads=max(1, cfg.vision_hidden_size // 32),
            image_size=side,
            patch_size=cfg.vision_patch_size,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=cfg.text_hidden_size,
            intermediate_size=cfg.text_hidden_size * 4,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            num_key_value_heads=cfg.text_heads,
            max_position_embeddings=2048,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=grid * grid,
        vision_feature_layer=cfg.vision_feature_layer,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(cfg.seed)
    model = LlavaForConditionalGeneration(config)
    if cfg.text_embedding_std != 0.02:
        torch.nn.init.normal_(model.get_input_embeddings().weight, std=cfg.text_embedding_std)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        do_center_crop=True,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=cfg.vision_patch_size,
        vision_feature_select_strategy="default",
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return cfg.text_hidden_size


def build_tiny_sam(path: str | os.PathLike, cfg: TinyBuildConfig, progress=print) -> None:
    """A random tiny SAM state dict at `path` (official .pth format), unless one is there."""
    import torch

    sam_path = Path(path)
    if sam_path.is_file():
        return
    progress(f"building tiny SAM (random weights) -> {sam_path}")
    sam_path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    sam = build_sam("tiny", cfg.sam_size())
    with tempfile.NamedTemporaryFile(dir=sam_path.parent, suffix=".tmp", delete=False) as handle:
        torch.save(sam.state_dict(), handle)  # official SAM format: a plain state dict
    os.replace(handle.name, sam_path)


def _tiny_segmenter(section, cfg: TinyBuildConfig, progress) -> None:
    build_tiny_sam(section.checkpoint, cfg, progress)


def _tiny_tracker(section, cfg: TinyBuildConfig, progress) -> None:
    if not (Path(section.model) / "config.json").is_file():
        build_tiny_sam2(section.model, cfg.sam2_image_size, cfg.seed + 2, progress)


# Random-weight builders by specialist registry name (vitron_ros.core.specialists.SPECIALISTS): (section, sizes,
# progress) writes the files the section names where they are missing. A specialist without one cannot be part of
# a built profile.
TINY_BUILDERS: dict[str, Callable] = {
    "segmenter": _tiny_segmenter,
    "tracker": _tiny_tracker,
    "editor": build_tiny_diffusion_assets,
    "generator": build_tiny_diffusion_assets,
    "video_generator": build_tiny_video_assets,
}


def build_tiny_assets(profile: ProfileConfig, cfg: TinyBuildConfig | None = None, progress=print) -> None:
    """Create the tiny LLM folder and every configured specialist's random weights where they are missing.

    Each artefact is written to a temporary name and moved into place, so an interrupted build never leaves a
    half-written checkpoint that later loads as corrupt.
    """
    import torch

    cfg = cfg or TinyBuildConfig()
    unbuildable = sorted(set(profile.specialists) - set(TINY_BUILDERS))
    if unbuildable:
        raise ValueError(f"profile {profile.name!r} configures {unbuildable}, which have no tiny builder")
    llm_path = Path(profile.llm.model)
    if not (llm_path / "config.json").is_file():
        progress(f"building tiny LLaVA + VITRON heads (random weights) -> {llm_path}")
        with replacing_folder(llm_path) as staging:
            hidden = build_tiny_llava(cfg, staging)
            torch.manual_seed(cfg.seed + 1)
            heads = build_heads(
                HeadsConfig(hidden_size=hidden, prompt_dim=TINY_PROMPT_DIM, synergy_dim=cfg.synergy_dim)
            )
            save_heads(heads, staging)
            write_facts(staging, TrainedWith(box_format="normalized", clip_frames=ClipSampling().frames,
                                             provenance={"trained_by": "nobody: random weights (vitron-lab build-tiny)"}))
    for name, section in profile.specialists.items():
        TINY_BUILDERS[name](section, cfg, progress)
