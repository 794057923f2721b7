"""Box carry through volumes (monaiseg.inferers.box_carry) on hand-made volumes with a stub network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monaiseg.inferers import BoxCarryInferer, BoxPromptInferer, box_carry_volume, box_logits, grow_box
from monaiseg.prompts import ObjectPrompt, prompts_to_json


class BoxInterior(torch.nn.Module):
    """Stub: foreground = bright pixels (> 0.5) inside the box, logit 10 / box width there, -1
    elsewhere (smaller boxes win overlaps). Records (slice signature, boxes) of every call."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, images, boxes):
        self.calls.append((images.clone(), boxes.clone()))
        height, width = images.shape[-2:]
        rows = torch.arange(height)[:, None]
        cols = torch.arange(width)[None, :]
        out = -torch.ones(len(boxes), 1, height, width)
        bright = images[0, 0] > 0.5
        for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
            inside = (cols >= x0) & (cols <= x1) & (rows >= y0) & (rows <= y1) & bright
            out[i, 0][inside] = 10.0 / (x1 - x0 + 1)
        return out


def moving_square(depth: int = 10) -> torch.Tensor:
    """(1, 20, 24, depth): a 5x5 square on slices 2..6, rows 5..9, columns 4+k..8+k (one column per
    slice); the dark background of slice k is k / 100 (tells the slices apart)."""
    volume = torch.arange(depth, dtype=torch.float32).expand(1, 20, 24, depth) / 100
    for k in range(2, 7):
        volume[0, 5:10, 4 + k : 9 + k, k] = 1.0
    return volume


def called_slices(net: BoxInterior, volume: torch.Tensor) -> list[int]:
    """Which slice of `volume` each recorded call was given."""
    return [
        next(k for k in range(volume.shape[-1]) if torch.equal(images[0], volume[..., k])) for images, _ in net.calls
    ]


def columns(labels: torch.Tensor, value: int, k: int) -> list[int]:
    return torch.nonzero((labels[..., k] == value).any(0)).flatten().tolist()


def test_carry_without_margin_shrinks_to_the_overlap_and_stops_where_the_object_ends():
    net = BoxInterior()
    # key slice 4: object at columns 8..12; box = its tight box
    labels = box_carry_volume(net, moving_square(), [ObjectPrompt(obj_id=3, frame=4, box=(8, 5, 12, 9))])
    # up: the box of slice k's mask meets the object of slice k+1 (shifted by one column) on one column less
    assert columns(labels, 3, 4) == [8, 9, 10, 11, 12]
    assert columns(labels, 3, 5) == [9, 10, 11, 12]
    assert columns(labels, 3, 6) == [10, 11, 12]
    # down: slice 3 has the object at 7..11, the carried box is 8..12
    assert columns(labels, 3, 3) == [8, 9, 10, 11]
    assert columns(labels, 3, 2) == [8, 9, 10]
    assert not labels[..., [0, 1, 7, 8, 9]].any()  # the object ends: slices 1 and 7 come out empty
    assert set(torch.unique(labels).tolist()) == {0.0, 3.0}
    assert torch.equal(labels[5:10].sum(0) > 0, labels.sum(0) > 0)  # rows 5..9 only
    # slices segmented: 4, 5, 6, 7 (empty: stop) going up; 3, 2, 1 (empty: stop) going down
    assert called_slices(net, moving_square()) == [4, 5, 6, 7, 3, 2, 1]


def test_margin_follows_the_whole_object():
    labels = box_carry_volume(
        BoxInterior(), moving_square(), [ObjectPrompt(obj_id=1, frame=4, box=(8, 5, 12, 9))], box_margin=1
    )
    for k in range(2, 7):
        assert columns(labels, 1, k) == list(range(4 + k, 9 + k))
    assert int(labels.sum()) == 5 * 25


def test_several_objects_share_slice_calls_and_run_to_the_volume_ends():
    volume = moving_square()
    volume[0, 13:17, 2:6, :] = 1.0  # a bar through every slice
    net = BoxInterior()
    prompts = [ObjectPrompt(obj_id=1, frame=4, box=(8, 5, 12, 9)), ObjectPrompt(obj_id=2, frame=6, box=(2, 13, 5, 16))]
    labels = box_carry_volume(net, volume, prompts, box_margin=1)
    assert all(int((labels[..., k] == 2).sum()) == 16 for k in range(10))  # both directions to both ends
    assert [int((labels[..., k] == 1).sum()) for k in range(10)] == [0, 0, 25, 25, 25, 25, 25, 0, 0, 0]
    # going up: slices 4..9 (object 1 joins at 4, object 2 at 6); going down: 5..0; one call per slice and direction
    assert called_slices(net, volume) == [4, 5, 6, 7, 8, 9, 5, 4, 3, 2, 1, 0]
    assert max(len(boxes) for _, boxes in net.calls) == 2  # two objects in one call


def test_overlap_goes_to_the_higher_logit():
    volume = torch.zeros(1, 12, 12, 3)
    volume[0, 2:10, 2:10, :] = 1.0
    prompts = [ObjectPrompt(obj_id=1, frame=1, box=(2, 2, 9, 9)), ObjectPrompt(obj_id=2, frame=1, box=(4, 4, 6, 6))]
    labels = box_carry_volume(BoxInterior(), volume, prompts)
    assert torch.all(labels[4:7, 4:7, 1] == 2)  # smaller box: logit 10/3 > 10/8
    assert int((labels[..., 1] == 1).sum()) == 64 - 9


def test_transpose_feeds_swapped_slices_and_gives_the_same_labels():
    net = BoxInterior()
    prompts = [ObjectPrompt(obj_id=1, frame=4, box=(8, 5, 12, 9))]
    plain = box_carry_volume(BoxInterior(), moving_square(), prompts, box_margin=1)
    swapped = box_carry_volume(net, moving_square(), prompts, box_margin=1, transpose=True)
    assert torch.equal(plain, swapped)
    images, boxes = net.calls[0]
    assert images.shape[-2:] == (24, 20)  # (W, H): rows along the volume's second axis
    assert boxes.tolist() == [[5.0, 8.0, 9.0, 12.0]]


def test_grow_box_clips_to_the_slice():
    assert grow_box((0, 3, 10, 5), 2, height=8, width=12) == (0.0, 1.0, 11.0, 7.0)


@pytest.mark.parametrize(
    "prompt, match",
    [
        (ObjectPrompt(obj_id=1, frame=2, box=(1, 1, 30, 5)), "outside"),
        (ObjectPrompt(obj_id=1, frame=12, box=(1, 1, 3, 3)), "key slice 12 is outside"),
        (ObjectPrompt(obj_id=1, frame=2, points=((3, 3),), point_labels=(1,)), "takes boxes only"),
        (ObjectPrompt(obj_id=1, frame=2, points=((3, 3),), point_labels=(0,)), "foreground click"),
    ],
)
def test_bad_prompts(prompt, match):
    with pytest.raises(ValueError, match=match):
        box_carry_volume(BoxInterior(), moving_square(), [prompt])


def test_an_object_prompted_on_two_slices_is_carried_from_the_nearer_one():
    net = BoxInterior()
    prompts = [ObjectPrompt(obj_id=1, frame=2, box=(6, 5, 10, 9)), ObjectPrompt(obj_id=1, frame=6, box=(10, 5, 14, 9))]
    labels = box_carry_volume(net, moving_square(), prompts, box_margin=1)
    for k in range(2, 7):
        assert columns(labels, 1, k) == list(range(4 + k, 9 + k))
    # up: 2, 3, 4 (the tie goes up), 6, 7 (empty: ends); down: 5 from 6, 1 (empty: ends) from 2
    assert called_slices(net, moving_square()) == [2, 3, 4, 6, 7, 5, 1]


@pytest.mark.parametrize(
    "second, match",
    [
        (ObjectPrompt(obj_id=1, frame=2, box=(1, 1, 3, 3)), "more than one box on slice 2"),
        (ObjectPrompt(obj_id=1, frame=5, box=(1, 1, 3, 3), frame_range=(3, 6)), "only prompt"),
    ],
)
def test_two_boxes_on_one_slice_or_beside_a_3d_box_are_refused(second, match):
    prompts = [ObjectPrompt(obj_id=1, frame=2, box=(1, 1, 3, 3)), second]
    with pytest.raises(ValueError, match=match):
        box_carry_volume(BoxInterior(), moving_square(), prompts)


def test_inferer_batches_json_prompts_and_keeps_metadata():
    affine = torch.diag(torch.tensor([0.5, 0.7, 2.0, 1.0], dtype=torch.float64))
    volumes = MetaTensor(torch.stack([moving_square(), moving_square()]), affine=affine)
    prompts = [
        prompts_to_json([ObjectPrompt(obj_id=1, frame=4, box=(8, 5, 12, 9))]),
        [ObjectPrompt(obj_id=7, frame=3, box=(7, 5, 11, 9))],
    ]
    out = BoxCarryInferer(box_margin=1)(volumes, BoxInterior(), prompts=prompts)
    assert out.shape == (2, 1, 20, 24, 10) and isinstance(out, MetaTensor)
    assert torch.allclose(out.affine, affine)
    assert set(torch.unique(out[0]).tolist()) == {0.0, 1.0} and set(torch.unique(out[1]).tolist()) == {0.0, 7.0}
    assert torch.equal(out[0, 0] > 0, out[1, 0] > 0)
    with pytest.raises(ValueError, match="1 prompt lists for a batch of 2"):
        BoxCarryInferer()(volumes, BoxInterior(), prompts=prompts[:1])


def test_box_prompt_inferer_trains_a_real_sam_through_swapped_slices():
    from monaiseg.networks import build_sam_segmenter

    torch.manual_seed(0)
    model = build_sam_segmenter(
        "vit_b", 32, pixel_mean=0.0, pixel_std=1.0, encoder_depth=1, encoder_embed_dim=32, encoder_num_heads=2
    )
    images = torch.rand(2, 1, 24, 28)
    boxes = torch.tensor([[2.0, 3.0, 20.0, 15.0], [5.0, 5.0, 9.0, 9.0]])
    logits = BoxPromptInferer(transpose=True)(images, model, boxes=boxes)
    assert logits.shape == (2, 1, 24, 28)
    direct = model(images.transpose(-1, -2), boxes=boxes[:, [1, 0, 3, 2]]).transpose(-1, -2)
    assert torch.allclose(logits, direct)
    logits.mean().backward()
    assert model.mask_decoder.output_hypernetworks_mlps[0].layers[0].weight.grad is not None
    assert np.isfinite(float(logits.detach().abs().sum()))
    assert box_logits(model, images[:1], boxes).shape == (2, 1, 24, 28)  # one image, two boxes
