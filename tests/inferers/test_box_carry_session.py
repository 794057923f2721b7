"""Box carry kept for corrections (`BoxCarry`): a correction reruns the carry from its slice outward
and stops where the carried box equals the one before; undo / reset; and the batched encoder (several
slices per call, each slice once for all objects) gives the labels of the unbatched one."""

from __future__ import annotations

import pytest
import torch

from monaiseg.inferers import BoxCarry, BoxCarrySettings, SessionError, box_carry_volume
from monaiseg.networks import build_sam_segmenter
from monaiseg.prompts import ObjectPrompt

from .test_box_carry import BoxInterior, called_slices, moving_square

KEY = ObjectPrompt(obj_id=3, frame=4, box=(8, 5, 12, 9))
TINY_SAM = {"image_size": 32, "encoder_depth": 1, "encoder_embed_dim": 32, "encoder_num_heads": 2}


@pytest.fixture(scope="module")
def sam():
    torch.manual_seed(0)
    return build_sam_segmenter("vit_b", **TINY_SAM, pixel_mean=0.0, pixel_std=1.0).eval()


def encoded_slices(model) -> tuple[list[int], callable]:
    """Wrap model.image_encoder to record the batch size of each call."""
    calls: list[int] = []
    encoder, original = model.image_encoder, model.image_encoder.forward
    encoder.forward = lambda x: calls.append(x.shape[0]) or original(x)
    return calls, lambda: setattr(encoder, "forward", original)


def test_correction_reruns_from_its_slice_and_equals_a_fresh_carry_with_all_prompts():
    net, volume = BoxInterior(), moving_square()
    carry = BoxCarry(net, volume, BoxCarrySettings(agree_iou=None))  # no stop where masks agree: exact
    start = carry.start([KEY]).clone()
    net.calls.clear()
    assert carry.correct(KEY) == [4] and called_slices(net, volume) == [4]  # same box: stops at once
    assert torch.equal(carry.labels, start)

    net.calls.clear()
    fix = ObjectPrompt(obj_id=3, frame=6, box=(9, 4, 15, 10))
    changed = carry.correct(fix)
    assert changed == [6, 7] and called_slices(net, volume) == [6, 7]  # slice 5 still belongs to slice 4
    assert torch.equal(carry.labels, box_carry_volume(BoxInterior(), volume, [KEY, fix]))
    assert all(torch.equal(carry.labels[..., k], start[..., k]) for k in range(10) if k not in changed)
    assert carry.history[3][-1].frame == 6

    assert carry.undo(3) == [6, 7] and torch.equal(carry.labels, start)
    assert carry.undo(3) == [4] and torch.equal(carry.labels, start)
    with pytest.raises(SessionError, match="nothing to undo") as err:
        carry.undo(3)
    assert err.value.status == 409
    assert carry.reset(3) == [1, 2, 3, 4, 5, 6, 7] and not carry.labels.any() and carry.objects == []


def test_a_correction_stops_where_the_carried_box_is_unchanged_and_keeps_other_objects():
    volume = moving_square()
    volume[0, 13:17, 2:6, :] = 1.0  # a bar through every slice: object 2
    net = BoxInterior()
    bar = ObjectPrompt(obj_id=2, frame=6, box=(2, 13, 5, 16))
    carry = BoxCarry(net, volume, BoxCarrySettings(box_margin=1))
    carry.start([KEY, bar])
    before = carry.labels.clone()
    net.calls.clear()
    # a looser box on slice 8 of the bar: its mask is the same, so is the box carried to slice 9 (slice 7
    # stays with slice 6: a tie goes up): only slice 8 is segmented
    changed = carry.correct(ObjectPrompt(obj_id=2, frame=8, box=(1, 12, 7, 18)))
    assert changed == [8] and called_slices(net, volume) == [8]
    assert torch.equal(carry.labels, before)
    assert torch.equal(carry.labels, box_carry_volume(BoxInterior(), volume, [KEY, bar], box_margin=1))


@pytest.mark.parametrize(
    "prompt, status, words",
    [
        (ObjectPrompt(obj_id=5, frame=4, box=(8, 5, 12, 9)), 404, "not in this session"),
        (ObjectPrompt(obj_id=3, frame=10, box=(8, 5, 12, 9)), 400, "outside the volume"),
        (ObjectPrompt(obj_id=3, frame=4, box=(8, 5, 40, 9)), 400, "outside"),
        (ObjectPrompt(obj_id=3, frame=4, points=((9, 6),), point_labels=(1,)), 400, "boxes only"),
    ],
)
def test_bad_corrections_change_nothing(prompt, status, words):
    carry = BoxCarry(BoxInterior(), moving_square())
    start = carry.start([KEY]).clone()
    with pytest.raises(SessionError, match=words) as err:
        carry.correct(prompt)
    assert err.value.status == status and torch.equal(carry.labels, start) and carry.history[3] == []


def test_clicks_refine_the_box_of_their_slice_and_undo_restores_it(sam):
    volume = torch.rand(1, 24, 28, 6)
    carry = BoxCarry(sam, volume, BoxCarrySettings(letterbox=32, transpose=True))
    start = carry.start([ObjectPrompt(obj_id=1, frame=2, box=(4, 4, 20, 18), frame_range=(0, 5))]).clone()
    changed = carry.correct(ObjectPrompt(obj_id=1, frame=3, points=((10.0, 9.0), (15.0, 12.0)), point_labels=(1, 0)))
    assert 3 in changed and carry.prompts[1][3].box == carry.history[1][0].records[3].prompt.box
    assert all(torch.equal(carry.labels[..., k], start[..., k]) for k in range(6) if k not in changed)
    carry.undo(1)
    assert torch.equal(carry.labels, start)


@pytest.mark.parametrize("ranged", [True, False])
def test_batched_encoder_gives_the_unbatched_labels_and_encodes_each_slice_once(sam, ranged):
    torch.manual_seed(1)
    volume = torch.rand(1, 24, 28, 10)
    volume[0, 6:18, 5:20] += 1.0
    prompts = [
        ObjectPrompt(obj_id=1, frame=3, box=(5, 6, 19, 17), frame_range=(0, 8) if ranged else None),
        ObjectPrompt(obj_id=2, frame=6, box=(8, 8, 14, 14), frame_range=(2, 9) if ranged else None),
    ]
    labels, calls = {}, {}
    for batch in (1, 4):
        calls[batch], restore = encoded_slices(sam)
        try:
            labels[batch] = box_carry_volume(sam, volume, prompts, letterbox=32, encode_batch=batch)
        finally:
            restore()
    assert torch.equal(labels[1], labels[4])
    assert sum(calls[1]) == sum(calls[4]) == len(calls[1])  # every slice segmented is encoded once
    if ranged:
        assert sum(calls[4]) == 10 and len(calls[4]) <= 4  # 0..9 in a few calls of up to 4 slices


def test_held_corrections_then_one_propagation_equal_the_corrections_carried_one_by_one():
    volume = moving_square()
    fix_a = ObjectPrompt(obj_id=3, frame=6, box=(9, 4, 15, 10))
    fix_b = ObjectPrompt(obj_id=3, frame=2, box=(5, 4, 11, 10))
    exact = BoxCarrySettings(box_margin=1, agree_iou=None)
    one_by_one = BoxCarry(BoxInterior(), volume, exact)
    one_by_one.start([KEY])
    one_by_one.correct(fix_a)
    one_by_one.correct(fix_b)
    net = BoxInterior()
    held = BoxCarry(net, volume, exact)
    start = held.start([KEY]).clone()
    net.calls.clear()
    assert held.correct(fix_a, carry=False) == [6] and held.correct(fix_b, carry=False) == [2]
    assert called_slices(net, volume) == [6, 2]  # each its own slice only
    assert all(torch.equal(held.labels[..., k], start[..., k]) for k in range(10) if k not in (2, 6))
    changed = held.propagate()
    assert 2 not in changed and 6 not in changed and torch.equal(held.labels, one_by_one.labels)
    assert held.propagate() == [] and len(held.history[3]) == 3  # two corrections, one propagation
    held.undo(3)  # the propagation
    assert all(torch.equal(held.labels[..., k], one_by_one.labels[..., k]) for k in (2, 6))


def test_an_object_added_mid_volume_keeps_the_other_objects():
    volume = moving_square()
    volume[0, 13:17, 2:6, 5:9] = 1.0  # a bar on slices 5..8 only: object 2, added later
    carry = BoxCarry(BoxInterior(), volume, BoxCarrySettings(box_margin=1))
    before = carry.start([KEY]).clone()
    changed = carry.add([ObjectPrompt(obj_id=2, frame=6, box=(2, 13, 5, 16))])
    assert changed == [4, 5, 6, 7, 8, 9] and carry.objects == [2, 3]  # 4 and 9: segmented, empty
    assert torch.equal(carry.labels == 3, before == 3) and (carry.labels[13:17, 2:6, 5:9] == 2).all()
    with pytest.raises(SessionError, match="already in this session") as err:
        carry.add([ObjectPrompt(obj_id=3, frame=1, box=(1, 1, 3, 3))])
    assert err.value.status == 409
    assert carry.reset(2) == [4, 5, 6, 7, 8, 9] and torch.equal(carry.labels, before)


def test_a_recarry_stops_where_the_new_mask_agrees_with_the_old_one():
    volume = moving_square()
    net = BoxInterior()
    carry = BoxCarry(net, volume, BoxCarrySettings(box_margin=1, agree_iou=0.75))
    carry.start([KEY])
    stored = {k: carry.records[3][k] for k in carry.records[3]}
    net.calls.clear()
    # a box one column short on slice 4: the boxes carried to slices 5 and 3 are narrower than before, their
    # masks 4 of 5 columns (IoU 0.8) and all of them (IoU 1): both agree, the carry stops there
    assert carry.correct(ObjectPrompt(obj_id=3, frame=4, box=(8, 5, 11, 9))) == [4]
    assert called_slices(net, volume) == [4, 5, 3]
    assert all(carry.records[3][k] is stored[k] for k in stored if k != 4)


def test_a_recarry_keeps_the_slices_carried_from_the_other_side():
    """A correction on slice 2 (carried down from the key slice 4): slice 3, between it and the key slice
    and now nearer to slice 2's upward carry, was carried from the key slice's side and keeps that result
    (with the old rule its new mask, IoU < 0.99 with the old one, replaced it)."""
    net, volume = BoxInterior(), moving_square()
    carry = BoxCarry(net, volume, BoxCarrySettings(agree_iou=0.99))
    carry.start([KEY])
    stored = dict(carry.records[3])
    net.calls.clear()
    assert carry.correct(ObjectPrompt(obj_id=3, frame=2, box=(6, 3, 13, 10))) == [2]
    assert called_slices(net, volume)[:2] == [2, 3]  # slice 3 segmented anew, its old result kept
    assert carry.records[3][3] is stored[3] and carry.records[3][4] is stored[4]
