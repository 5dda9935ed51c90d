"""Region (sketch) encoding: geometry, pooling against a hand-computed mean, box orientation."""

import numpy as np
import pytest
import torch

from vitron_ros.core.conversation import Region
from vitron_ros.core.geometry import Letterbox
from vitron_ros.core.model.heads import region_grid_weights
from vitron_ros.core.model.vitron_llm import ImageEncoding


def test_letterbox_round_trip_and_offsets():
    lb = Letterbox(height=112, width=224)
    assert lb.side == 224 and lb.offset_xy == (0, 56)
    box = (10.0, 20.0, 100.0, 90.0)
    assert lb.box_from_normalized(lb.box_to_normalized(box)) == pytest.approx(box)
    assert lb.box_to_normalized(box) == pytest.approx((10 / 224, 76 / 224, 100 / 224, 146 / 224))
    tall = Letterbox(height=200, width=100)
    assert tall.offset_xy == (50, 0)
    padded = tall.pad_image(np.zeros((200, 100, 3), np.uint8), (1, 2, 3))
    assert padded.shape == (200, 200, 3) and tuple(padded[0, 0]) == (1, 2, 3) and tuple(padded[0, 60]) == (0, 0, 0)


def test_region_weights_are_patch_coverage_fractions():
    square = np.zeros((64, 64), bool)
    square[0:16, 0:8] = True  # half of patch (0, 0) at grid 4
    weights = region_grid_weights(square, 4)
    assert weights[0, 0] == pytest.approx(0.5)
    assert weights.sum() == pytest.approx(0.5)


def test_region_pooling_equals_hand_computed_mean_in_a_non_square_box(tiny_pipeline):
    llm = tiny_pipeline.llm
    grid, dim = 7, llm.heads.config.hidden_size
    # Image 112 high x 224 wide -> padded square 224, image 56 px down; 7x7 patches of 32 px.
    letterbox = Letterbox(height=112, width=224)
    features = torch.randn(grid * grid, dim)
    encoding = ImageEncoding(features=features, grid=grid, letterbox=letterbox)
    mask = np.zeros((112, 224), bool)
    mask[8:104, 32:96] = True  # square rows 64-160 -> patch rows 2-4 (3 tall); cols 32-96 -> patch cols 1-2 (2 wide)
    box = (32.0, 8.0, 96.0, 104.0)
    embedding = llm.sketch_embeddings(encoding, [Region(mask=mask, box_xyxy=box, kind="box")])[0]

    inside = [r * grid + c for r in (2, 3, 4) for c in (1, 2)]
    expected_pool = features[inside].mean(dim=0)
    box_norm = torch.tensor([32 / 224, 64 / 224, 96 / 224, 160 / 224])  # x1, y1, x2, y2 of the padded square
    location = llm.heads.sketch_encoder.location
    with torch.no_grad():
        assert torch.allclose(embedding - location(box_norm), expected_pool, atol=1e-5)
        # the transposed box (y first), as the published code fed it, gives a different embedding
        transposed = box_norm[[1, 0, 3, 2]]
        assert not torch.allclose(embedding, expected_pool + location(transposed), atol=1e-3)
    # and the transposed pooling (rows <-> cols) differs from the hand-computed mean
    transposed_inside = [c * grid + r for r in (2, 3, 4) for c in (1, 2)]
    assert not torch.allclose(features[transposed_inside].mean(dim=0), expected_pool)


def test_empty_region_is_an_error(tiny_pipeline):
    llm = tiny_pipeline.llm
    encoding = ImageEncoding(torch.randn(49, llm.heads.config.hidden_size), 7, Letterbox(112, 224))
    with pytest.raises(ValueError, match="covers no part"):
        llm.sketch_embeddings(encoding, [Region(np.zeros((112, 224), bool), (0, 0, 1, 1), "box")])
