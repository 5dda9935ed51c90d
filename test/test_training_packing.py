"""Training sees exactly what inference sees: packed multi-turn sequences vs the pipeline's single-turn prompt."""

import numpy as np
import torch

from vitron_lab.shapes.instructions import make_sample
from vitron_lab.shapes.world import generate_scene
from vitron_ros.core.sketch import Sketch


def test_packed_turns_match_single_turn_inference(shapes_trainer, shapes_pipeline):
    """Hidden states of a turn packed behind others equal those of the pipeline's own single-turn prompt."""
    trainer, pipeline = shapes_trainer, shapes_pipeline
    scene = generate_scene(5)
    rng = np.random.default_rng(0)
    samples = [make_sample(scene, t, rng, attempts=5) for t in ("vqa", "referring", "grounded")]
    batch = trainer.packer.pack([scene], [samples])
    model = trainer.model.eval()
    with torch.no_grad():
        features = model.image_features(torch.as_tensor(scene.image[None]))
        hidden = model._language(batch, [scene], features)[0]
    # The last turn (grounded) through the pipeline: prompt + teacher-forced reply, hidden at its [SEG] tokens.
    sample = samples[-1]
    query = pipeline._begin(scene.image, sample.request, [], None)
    reply_ids = pipeline.llm.encode_reply(" " + sample.reply)
    expected = pipeline.llm.signal_embeddings(query.prompt, reply_ids)
    segs = [t for t in batch.segs if t.task == 1]
    with torch.no_grad():
        got = model.heads.signal_projector(hidden[[t.position for t in segs]]).numpy()
    assert got.shape == expected.shape and len(got) == len(sample.seg_targets)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_clip_pixels_match_the_image_processor(shapes_trainer, shapes_pipeline):
    scene = generate_scene(3)
    ours = shapes_trainer.model.clip_pixels(torch.as_tensor(scene.image[None]))
    processor = shapes_pipeline.llm.processor.image_processor
    theirs = processor(images=scene.image, return_tensors="pt")["pixel_values"]
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=2e-2)


def test_batched_mask_decoder_matches_sam(shapes_trainer):
    from vitron_lab.training.model import decode_masks

    sam = shapes_trainer.model.sam.eval()
    images = torch.as_tensor(np.stack([generate_scene(s).image for s in (1, 2)]))
    with torch.no_grad():
        embeddings = shapes_trainer.model.sam_embeddings(images)
        boxes = torch.tensor([[4.0, 4.0, 30.0, 30.0], [10.0, 20.0, 50.0, 60.0]])
        sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
        batched, quality = decode_masks(sam, embeddings, sparse, dense)
        for i in range(2):
            single, single_quality = sam.mask_decoder(embeddings[i : i + 1], sam.prompt_encoder.get_dense_pe(),
                                                      sparse[i : i + 1], dense[i : i + 1], multimask_output=False)
            np.testing.assert_allclose(batched[i, :1].numpy(), single[0].numpy(), rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(quality[i, :1].numpy(), single_quality[0].numpy(), rtol=1e-4, atol=1e-4)


def test_sketch_embeddings_match_the_pipeline(shapes_trainer, shapes_pipeline):
    """The sketch encoder in training (ground-truth region) equals the pipeline's on the same region mask."""
    from vitron_ros.core.conversation import Region

    scene = generate_scene(8)
    obj = scene.objects[0]
    rng = np.random.default_rng(1)
    sample = make_sample(scene, "region", rng)
    sample.sketch_targets = [0]
    batch = shapes_trainer.packer.pack([scene], [[sample]])
    model = shapes_trainer.model.eval()
    with torch.no_grad():
        features = model.image_features(torch.as_tensor(scene.image[None]))
        ours = model._sketch_embeddings(batch, [scene], features)
    encoding = shapes_pipeline.llm.encode_image(scene.image)
    region = Region(mask=obj.mask, box_xyxy=obj.box_xyxy, kind="box")
    theirs = shapes_pipeline.llm.sketch_embeddings(encoding, [region])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-4)
    assert isinstance(sample.sketches[0], Sketch)


def test_packed_clip_questions_match_ask_clip(shapes_trainer, shapes_pipeline):
    """A clip batch in training gives the same answer logits as the pipeline's ask_clip prompt for that clip."""
    from vitron_lab.shapes.video_instructions import make_video_sample
    from vitron_lab.shapes.world import generate_clip

    trainer, pipeline = shapes_trainer, shapes_pipeline
    clip = generate_clip(11, frames=16)
    sampled = trainer.clip_sampling.indices(16)
    rng = np.random.default_rng(1)
    sample = make_video_sample(clip, sampled, rng, kind="count")
    frames = np.stack([clip.frames[i] for i in sampled])
    batch = trainer.clip_packer.pack([frames], [[sample]])
    model = trainer.model.eval()
    with torch.no_grad():
        features = model.video_features(torch.as_tensor(frames[None]))
        hidden = model._language(batch, [None], features)[0]
        got = model.llava.lm_head(hidden[torch.as_tensor(batch.label_position)])
    encoding = pipeline.llm.encode_video(list(frames))
    torch.testing.assert_close(features[0], encoding.features, rtol=1e-4, atol=1e-4)
    # ask_clip's prompt (frames sampled the same way) + the teacher-forced answer: same next-token logits
    query = pipeline._begin(clip.frames[0], sample.request, [], None, video=list(frames))
    reply_ids = pipeline.llm.encode_reply(" " + sample.reply)
    with torch.no_grad():
        reply = pipeline.llm._embed(torch.as_tensor(reply_ids))
        full = torch.cat([query.prompt.embeds, reply])[None]
        out = pipeline.llm.model.model.language_model(inputs_embeds=full).last_hidden_state[0]
        start = query.prompt.token_count - 1
        expected = pipeline.llm.model.lm_head(out[start : start + len(reply_ids)])
    assert list(batch.label_token) == reply_ids + [pipeline.llm.tokenizer.eos_token_id]
    torch.testing.assert_close(got[: len(reply_ids)], expected, rtol=1e-3, atol=1e-3)
