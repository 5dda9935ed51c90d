"""What the shapes profile's encoders know about each object: linear probes on frozen features.

    .venv/bin/python bench/probe_shapes_features.py [--train 3000] [--test 1000]

For every object of ShapesWorld scenes (training seeds for the probe's fit, held-out seeds for its score), the
features under the object's mask are averaged (mask coverage of each patch as the weight) and a logistic regression
predicts its shape and its colour. Rows: the projected tokens the LLM reads, the CLIP tower's last layer, SAM's
image embedding, and pixel descriptors (fill ratio, aspect, area; mean RGB) as the bar that says the task is easy.
A feature that cannot tell a circle from a square here cannot let the LLM answer "what shape is ...".
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from vitron_lab.shapes.world import COLOURS, SHAPES, generate_scene
from vitron_lab.training.model import CLIP_MEAN, CLIP_STD
from vitron_ros.core.config import load_profile
from vitron_ros.core.model.sam_loader import load_sam


def collect(llava, sam, seeds, target: int):
    cfg = llava.config
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    scenes, count = [], 0
    for seed in seeds:
        scenes.append(generate_scene(seed, size=64))
        count += len(scenes[-1].objects)
        if count >= target:
            break
    feats = {"LLM tokens (projected)": [], "CLIP last layer": [], "SAM embedding": [], "pixels: fill, aspect, area": [],
             "pixels: mean RGB": []}
    labels, counts = [], []
    for start in range(0, len(scenes), 64):
        batch = scenes[start:start + 64]
        images = torch.from_numpy(np.stack([s.image for s in batch]))
        with torch.no_grad():
            pixels = (images.permute(0, 3, 1, 2).float() / 255 - mean) / std
            projected = torch.stack(list(llava.model.get_image_features(
                pixel_values=pixels, vision_feature_layer=cfg.vision_feature_layer,
                vision_feature_select_strategy=cfg.vision_feature_select_strategy).pooler_output))
            clip = llava.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-1][:, 1:]
            sam_features = sam.image_encoder(sam.preprocess(images.permute(0, 3, 1, 2).float())).flatten(2)
        for b, scene in enumerate(batch):
            for obj in scene.objects:
                mask = torch.from_numpy(obj.mask).float()[None, None]
                w8, w16 = (F.adaptive_avg_pool2d(mask, g).flatten() for g in (8, 16))
                feats["LLM tokens (projected)"].append(w8 @ projected[b] / w8.sum())
                feats["CLIP last layer"].append(w8 @ clip[b] / w8.sum())
                feats["SAM embedding"].append(w16 @ sam_features[b].T / w16.sum())
                x1, y1, x2, y2 = obj.box_xyxy
                area = float(obj.mask.sum())
                feats["pixels: fill, aspect, area"].append(torch.tensor([area / ((x2 - x1) * (y2 - y1)),
                                                                         (x2 - x1) / (y2 - y1), area / 100]))
                feats["pixels: mean RGB"].append(torch.tensor(scene.image[obj.mask].mean(0) / 255, dtype=torch.float32))
                labels.append((SHAPES.index(obj.spec.shape), list(COLOURS).index(obj.spec.colour)))
                counts.append(len(scene.objects))
    return {k: torch.stack(v).float() for k, v in feats.items()}, torch.tensor(labels), np.array(counts)


def probe(x, y, x_test, steps: int = 600) -> np.ndarray:
    """Logistic regression on standardised features -> predicted classes of x_test."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    x, x_test = (x - mu) / sd, (x_test - mu) / sd
    net = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    optimiser = torch.optim.Adam(net.parameters(), 1e-2, weight_decay=1e-4)
    for _ in range(steps):
        optimiser.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimiser.step()
    with torch.no_grad():
        return net(x_test).argmax(1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="shapes")
    parser.add_argument("--train", type=int, default=3000, help="objects the probes are fitted on")
    parser.add_argument("--test", type=int, default=1000, help="held-out objects they are scored on")
    args = parser.parse_args()
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(0)
    profile = load_profile(args.profile)
    llava = LlavaForConditionalGeneration.from_pretrained(profile.llm.model).eval()
    sam = load_sam("tiny", profile.section("segmenter").checkpoint).eval()
    train, y_train, _ = collect(llava, sam, range(0, 10**6), args.train)
    test, y_test, counts = collect(llava, sam, range(2_000_000_000, 2_001_000_000), args.test)
    print(f"{len(y_train)} training objects, {len(y_test)} held-out objects; chance: shape 0.33, colour 0.20")
    print(f"| features | shape | colour | shape with 1 / 2 / 3 / 4 / 5 objects |\n|---|---|---|---|")
    for name in train:
        cells = []
        for task in (0, 1):
            correct = probe(train[name], y_train[:, task], test[name]) == y_test[:, task].numpy()
            cells.append(correct)
        by_count = " / ".join(f"{cells[0][counts == n].mean():.2f}" for n in range(1, 6))
        print(f"| {name} | {cells[0].mean():.3f} | {cells[1].mean():.3f} | {by_count} |")


if __name__ == "__main__":
    main()
