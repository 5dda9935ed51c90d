"""GLaMM parity (STYLE rule 17): GLaMM's own model, built from its repository's code at tiny size with random weights,
ran its forward on fixed inputs (test/fixtures/glamm/make_glamm_fixture.py); this project's converter must turn that
state dict into its own parts (transformers LLaVA + signal projector + segment_anything SAM) and reproduce the
outputs: [SEG] embeddings to 1e-4, masks at IoU >= 0.99."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vitron_ros.core.errors import CheckpointLoadError
from vitron_ros.core.model import glamm
from vitron_ros.core.model.heads import HeadsConfig, build_heads
from vitron_ros.core.model.sam_loader import build_sam, tiny_sam_size

FIXTURE = Path(__file__).parent / "fixtures" / "glamm"


@pytest.fixture(scope="module")
def converted():
    config = json.loads((FIXTURE / "config.json").read_text())
    parts = glamm.split_glamm_state(load_file(FIXTURE / "glamm_tiny.safetensors"))
    llava = glamm.build_llava(parts, load_file(FIXTURE / "clip_tiny" / "model.safetensors"),
                              glamm.llava_config(config["glamm"], config["clip_vision_tower"]))
    sam = build_sam("tiny", tiny_sam_size(parts.sam))  # the project's tiny-SAM builder reads the sizes
    sam.load_state_dict(parts.sam, strict=True)
    heads = build_heads(HeadsConfig(hidden_size=config["glamm"]["hidden_size"], prompt_dim=config["glamm"]["out_dim"]))
    heads.signal_projector.load_state_dict(parts.projector, strict=True)
    return llava.eval(), sam.eval(), heads.eval(), parts


def test_every_glamm_key_has_a_place(converted):
    _, _, _, parts = converted
    # transformers 4.31 saved rotary buffers (so published checkpoints hold them); no region encoder or tower here
    assert set(parts.dropped) == {f"model.layers.{i}.self_attn.rotary_emb.inv_freq" for i in range(2)}
    with pytest.raises(CheckpointLoadError, match="belongs to no part"):
        glamm.split_glamm_state({**load_file(FIXTURE / "glamm_tiny.safetensors"), "model.surprise.weight": torch.ones(1)})
    dropped = glamm.split_glamm_state({**load_file(FIXTURE / "glamm_tiny.safetensors"),
                                       "model.region_encoder.updims.weight": torch.ones(1)}).dropped
    assert "not ported" in dropped["model.region_encoder.updims.weight"]


@pytest.mark.parametrize("case", ["refseg", "gcg2", "generate"])
def test_converted_glamm_reproduces_its_seg_embeddings_and_masks(converted, case):
    llava, sam, heads, _ = converted
    io = load_file(FIXTURE / "io.safetensors")
    facts = json.loads((FIXTURE / "io.json").read_text())
    ids = io["generate.output_ids"][:-1] if case == "generate" else io[f"{case}.input_ids"]
    at = int((ids == glamm.IMAGE_TOKEN_INDEX).nonzero()[0])
    n_image = llava.config.image_seq_length
    expanded = torch.cat([ids[:at], torch.full((n_image,), llava.config.image_token_id), ids[at + 1:]])
    with torch.no_grad():
        hidden = llava.model(input_ids=expanded[None], pixel_values=io["global_enc_image"]).last_hidden_state[0]
        positions = glamm.signal_positions(expanded, facts["seg_token_idx"])
        positions = positions[positions < len(hidden)]
        assert torch.equal(positions, io[f"{case}.seg_hidden_positions"])
        embeddings = heads.signal_projector(hidden[positions])
        image = sam.preprocess(io["grounding_resized_uint8"].permute(2, 0, 1).float())[None]
        image_embeddings = sam.image_encoder(image)
        sparse, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
        count = len(embeddings)
        low_res, _ = sam.mask_decoder(
            image_embeddings=image_embeddings, image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=torch.cat([sparse.expand(count, -1, -1), embeddings[:, None]], dim=1),
            dense_prompt_embeddings=dense.expand(count, -1, -1, -1), multimask_output=False)
        logits = sam.postprocess_masks(low_res, tuple(facts["resize_size"]), tuple(facts["original_size"]))[:, 0]
    assert (embeddings - io[f"{case}.pred_embeddings"]).abs().max() <= 1e-4
    ours, theirs = logits > 0, io[f"{case}.pred_mask_logits"] > 0
    for mine, reference in zip(ours, theirs, strict=True):
        union = (mine | reference).sum()
        assert union == 0 or (mine & reference).sum() / union >= 0.99


@pytest.fixture(scope="module")
def glamm_pipeline(glamm_tiny_profile):
    from vitron_ros.core.pipeline import VitronPipeline

    return VitronPipeline.from_profile(glamm_tiny_profile)


def test_the_converted_folder_loads_as_the_glamm_family(glamm_pipeline):
    llm = glamm_pipeline.llm
    assert llm.family.name == "glamm" and not llm.has_sketch_encoder and llm.prompt_dim == 64
    assert llm.config.box_format == "normalized" and llm.box_prompt is False


def test_the_pipeline_reproduces_glamm_end_to_end(glamm_pipeline):
    """The whole runtime path (prompt template, tokenizer, CLIP resize, splice, [SEG] one token early, projector,
    segmenter) on GLaMM's own inputs gives GLaMM's prompt ids, [SEG] embedding and mask."""
    io = load_file(FIXTURE / "io.safetensors")
    facts = json.loads((FIXTURE / "io.json").read_text())
    image = io["image_uint8"].numpy()
    request = "Can you segment the red cup in this image?"
    reply = "Sure, it is [SEG]."
    result = glamm_pipeline.ground_reply(image, request, reply)
    assert result.errors == []
    from vitron_ros.core.conversation import Conversation, Turn

    llm = glamm_pipeline.llm
    family = llm.family
    conversation = Conversation(system=family.system_prompt, style=family.prompt_style, image_prefix=family.image_prefix,
                                turns=[Turn(user=request, assistant=reply)])
    rendered = conversation.render(eos=llm.tokenizer.eos_token)
    assert rendered == facts["cases"]["refseg"]["prompt"]  # byte for byte GLaMM's own prompt
    ids = llm.tokenizer(rendered, add_special_tokens=True)["input_ids"]
    reference = io["refseg.input_ids"].tolist()
    at = reference.index(glamm.IMAGE_TOKEN_INDEX)
    assert ids == reference[:at] + [llm.image_token_id] + reference[at + 1:]
    masks = [m for m in result.masks if m.invocation_index is not None]
    assert len(masks) == 1
    theirs = (io["refseg.pred_mask_logits"][0] > 0).numpy()
    ours = masks[0].mask
    union = (ours | theirs).sum()
    assert union == 0 or (ours & theirs).sum() / union >= 0.99


def test_a_request_to_segment_gets_a_mask_from_the_glamm_profile(glamm_pipeline):
    import numpy as np

    image = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    result, _ = glamm_pipeline(image, "Please segment the red cup in this image.", task="segmentation")
    assert result.errors == [], result.errors
    assert "[SEG]" in result.raw_reply and "<module>" not in result.raw_reply  # GLaMM's dialect, no calls
    assert any(m.invocation_index is not None and m.mask.shape == (120, 160) for m in result.masks)


def test_models_fetch_downloads_the_sources_and_converts_them(tmp_path, capsys):
    """`vitron models fetch` on a profile with llm.source: each source is fetched (here: local folders, as a hub
    snapshot is one), the family's converter writes llm.model, and a second fetch finds it there."""
    import dataclasses

    from vitron_lab.tiny_glamm import stage_published_layout
    from vitron_ros.core.config import load_profile
    from vitron_ros.core.fetch import fetch_profile

    published, clip = stage_published_layout(tmp_path)
    tiny = load_profile("glamm-tiny")
    profile = dataclasses.replace(
        tiny, name="glamm-local", fetch_hint="",
        llm=dataclasses.replace(tiny.llm, model=str(tmp_path / "out" / "llava"), source=f"{published} {clip}"),
        specialists={"segmenter": dataclasses.replace(tiny.section("segmenter"),
                                                      checkpoint=str(tmp_path / "out" / "sam.safetensors"))})
    fetch_profile(profile)
    assert (tmp_path / "out" / "llava" / "vitron_facts.json").is_file()
    assert (tmp_path / "out" / "sam.safetensors").is_file()
    fetch_profile(profile)
    assert "LLM folder present" in capsys.readouterr().out
    with pytest.raises(Exception, match="names its checkpoint and its CLIP tower"):
        fetch_profile(dataclasses.replace(profile, llm=dataclasses.replace(
            profile.llm, model=str(tmp_path / "other" / "llava"), source=str(published))))


def test_grounded_conversation_gives_each_phrase_glamms_mask(glamm_pipeline):
    """GLaMM's grounded-conversation format, `<p> phrase </p> [SEG]`, through the whole runtime: each phrase gets the
    mask GLaMM's own code gave its [SEG]."""
    io = load_file(FIXTURE / "io.safetensors")
    request = ("Could you please give me a detailed description of the image? Please respond with interleaved "
               "segmentation masks for the corresponding parts of the answer.")
    result = glamm_pipeline.ground_reply(io["image_uint8"].numpy(), request, "<p> a cat </p> [SEG] sits on <p> a mat </p> [SEG].")
    assert result.errors == [] and result.answer == "a cat sits on a mat."
    phrases = result.grounded_phrases
    assert [p for p, _ in phrases] == ["a cat", "a mat"]
    for (_, mask), reference in zip(phrases, io["gcg2.pred_mask_logits"] > 0, strict=True):
        union = (mask.mask | reference.numpy()).sum()
        assert union == 0 or (mask.mask & reference.numpy()).sum() / union >= 0.99
