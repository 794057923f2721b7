"""propagate_volume / PropagationInferer with a random-init sam2.1 tiny at 256 (masks are
arbitrary, so these tests check structure: which frames each pass visits, how the passes are
merged into labels, validation, dtype, memory bound, metadata).

sam2's generator is wrapped to record what it yields (frame, direction, object ids, mask
logits); the expected label volume is then rebuilt from those logits by the documented rule:
a frame of an object takes its mask from the pass whose nearest prompted frame is closer
(ties: forward); overlapping objects go to the highest logit; the reverse pass never
overwrites a voxel the forward pass labelled."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monaiseg.data.collate import collate_with_prompts
from monaiseg.inferers import PropagationInferer, memory_window, propagate_volume
from monaiseg.inferers.session import owns_frame
from monaiseg.inferers.tracking import SHARED_FRAMES, frames_in_both_passes
from monaiseg.networks import build_sam2_segmenter
from monaiseg.prompts import ObjectPrompt


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sam2_segmenter("tiny", image_size=256).eval()


def run_recorded(model, volume, prompts):
    """propagate_volume, recording sam2's yields, its per-frame tracking calls and the images it encodes."""
    yields, calls, encoded, stats = [], [], [], {}
    generator, single, get_feature = model.propagate_in_video, model._run_single_frame_inference, model.forward_image

    def propagate_in_video(state, *args, reverse=False, **kwargs):
        for frame, obj_ids, masks in generator(state, *args, reverse=reverse, **kwargs):
            yields.append((reverse, frame, list(obj_ids), masks[:, 0].float().cpu().clone()))
            yield frame, obj_ids, masks

    def run_single(*args, **kwargs):
        calls.append((kwargs.get("reverse"), kwargs.get("frame_idx"), kwargs.get("is_init_cond_frame")))
        return single(*args, **kwargs)

    def forward_image(images):
        encoded.append(images.shape[0])
        return get_feature(images)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model, "propagate_in_video", propagate_in_video)
        mp.setattr(model, "_run_single_frame_inference", run_single)
        mp.setattr(model, "forward_image", forward_image)
        labels = propagate_volume(model, volume, prompts, stats=stats)
    return SimpleNamespace(labels=labels, yields=yields, calls=calls, encoded=encoded, stats=stats)


def owner_is_reverse(keys, frame) -> bool:
    """Independent statement of the ownership rule."""
    behind = [frame - k for k in keys if k <= frame]
    ahead = [k - frame for k in keys if k >= frame]
    if not behind:
        return True
    if not ahead:
        return False
    return min(ahead) < min(behind)


def expected_labels(run, keys_per_obj, shape, dtype):
    labels = torch.zeros(shape, dtype=dtype)
    for reverse, frame, obj_ids, logits in run.yields:
        own = [i for i, o in enumerate(obj_ids) if owner_is_reverse(keys_per_obj[o], frame) == reverse]
        if not own:
            continue
        best, winner = logits[own].max(dim=0)
        ids = torch.tensor([obj_ids[i] for i in own], dtype=dtype)[winner]
        fg = best > 0
        if reverse:
            fg &= labels[..., frame] == 0
        labels[..., frame][fg] = ids[fg]
    return labels


# --------------------------------------------------------------------------- one object


@pytest.fixture(scope="module")
def one_object(model):
    torch.manual_seed(3)
    volume = torch.rand(1, 48, 40, 30)  # (C, H=I, W=J, D=K)
    prompts = [ObjectPrompt(obj_id=3, frame=12, box=(5.0, 8.0, 30.0, 40.0))]
    return run_recorded(model, volume, prompts)


@pytest.mark.slow
def test_one_object_labels_shape_dtype_values(one_object):
    labels = one_object.labels
    assert labels.shape == (48, 40, 30)
    assert labels.dtype == torch.uint8
    assert set(labels.unique().tolist()) <= {0, 3}


@pytest.mark.slow
def test_both_passes_run_from_the_key_slice(one_object):
    forward = [f for r, f, _, _ in one_object.yields if not r]
    backward = [f for r, f, _, _ in one_object.yields if r]
    assert forward == list(range(12, 30))
    assert backward == list(range(12, -1, -1))
    assert all(ids == [3] for _, _, ids, _ in one_object.yields)
    # sam2 tracking calls (not the prompted frame): forward 13..29, then reverse 11..0
    tracked = [(r, f) for r, f, init in one_object.calls if init is False]
    assert tracked == [(False, f) for f in range(13, 30)] + [(True, f) for f in range(11, -1, -1)]
    # the prompt is added once per pass, on its own frame
    assert [(f, init) for _, f, init in one_object.calls if init] == [(12, True), (12, True)]
    # mask logits are at the volume's slice size (H, W), not at the model's 256
    assert all(m.shape == (1, 48, 40) for _, _, _, m in one_object.yields)


@pytest.mark.slow
def test_one_object_labels_follow_owning_pass(one_object):
    expected = expected_labels(one_object, {3: [12]}, (48, 40, 30), torch.uint8)
    assert torch.equal(one_object.labels, expected)
    # slice 12..29 come from the forward logits, 0..11 from the reverse ones
    forward = {f: m for r, f, _, m in one_object.yields if not r}
    backward = {f: m for r, f, _, m in one_object.yields if r}
    assert torch.equal(one_object.labels[..., 20] == 3, forward[20][0] > 0)
    assert torch.equal(one_object.labels[..., 4] == 3, backward[4][0] > 0)


@pytest.mark.slow
def test_every_slice_is_encoded_once(one_object, two_objects):
    """Both passes visit the prompted slices and (two objects) slices 6..19 between them: kept from the forward
    pass, not encoded again (54 encoder calls for two_objects' 40 slices without keeping them)."""
    assert one_object.encoded == [1] * 30
    assert two_objects.encoded == [1] * 40


def test_frames_kept_for_both_passes_span_the_prompts_up_to_a_limit():
    def at(*frames):
        return [ObjectPrompt(obj_id=i + 1, frame=f, box=(0.0, 0.0, 4.0, 4.0)) for i, f in enumerate(frames)]

    assert frames_in_both_passes(at(7)) == {7}
    assert frames_in_both_passes(at(9, 4, 6)) == {4, 5, 6, 7, 8, 9}
    assert frames_in_both_passes(at(0, SHARED_FRAMES - 1)) == set(range(SHARED_FRAMES))
    assert frames_in_both_passes(at(0, SHARED_FRAMES, 3)) == {0, 3, SHARED_FRAMES}  # too far apart: prompts only


@pytest.mark.slow
def test_one_object_memory_bounded(model, one_object):
    assert memory_window(model) == max(model.num_maskmem, model.max_obj_ptrs_in_encoder) == 16
    assert 1 <= one_object.stats["max_stored_frames"] <= memory_window(model)


# --------------------------------------------------------------------------- two objects, 40 slices


KEYS_2 = {1: [5], 2: [20]}


@pytest.fixture(scope="module")
def two_objects(model):
    torch.manual_seed(4)
    volume = torch.rand(1, 32, 32, 40)
    prompts = [
        ObjectPrompt(obj_id=1, frame=5, box=(2.0, 2.0, 12.0, 12.0)),
        ObjectPrompt(obj_id=2, frame=20, box=(18.0, 18.0, 30.0, 30.0)),
    ]
    return run_recorded(model, volume, prompts)


@pytest.mark.slow
def test_two_objects_values_and_both_tracked(two_objects):
    labels = two_objects.labels
    assert labels.shape == (32, 32, 40) and labels.dtype == torch.uint8
    assert set(labels.unique().tolist()) <= {0, 1, 2}
    assert all(ids == [1, 2] for _, _, ids, _ in two_objects.yields)
    # each object is tracked forward from its key slice to the end
    forward = {f for r, f, _, _ in two_objects.yields if not r}
    assert set(range(5, 40)) <= forward


@pytest.mark.slow
def test_two_objects_every_slice_visited_by_its_owning_pass(two_objects):
    visited = {(r, f) for r, f, _, _ in two_objects.yields}
    not_visited = [
        (obj, f) for obj, keys in KEYS_2.items() for f in range(40) if (owner_is_reverse(keys, f), f) not in visited
    ]
    assert not_visited == [], f"(object, slice) never produced by the pass that owns it: {not_visited}"


@pytest.mark.slow
def test_two_objects_labels_follow_ownership_and_highest_logit(two_objects):
    expected = expected_labels(two_objects, KEYS_2, (32, 32, 40), torch.uint8)
    assert torch.equal(two_objects.labels, expected)


@pytest.mark.slow
def test_two_objects_memory_bounded_by_window(model, two_objects):
    """Without dropping stale outputs the forward pass alone would hold 34 + 34 frames."""
    window = memory_window(model)
    assert window < two_objects.stats["max_stored_frames"] <= 2 * window


# --------------------------------------------------------------------------- ownership rule


def test_owns_with_two_key_frames():
    keys = [5, 15]
    cases = {
        0: True,
        4: True,
        5: False,
        6: False,
        9: False,
        10: False,
        11: True,
        14: True,
        15: False,
        16: False,
        29: False,
    }
    for frame, reverse in cases.items():  # True: the reverse pass owns the frame
        assert owns_frame(keys, frame, reverse=reverse), frame
        assert not owns_frame(keys, frame, reverse=not reverse), frame
    assert [f for f in range(20) if owns_frame([15, 5], f, reverse=True)] == [0, 1, 2, 3, 4, 11, 12, 13, 14]
    for keys in ([5, 15], [0], [29], [3, 4, 20]):  # exactly one pass owns every frame
        for f in range(30):
            assert owns_frame(keys, f, False) != owns_frame(keys, f, True)
            assert owns_frame(keys, f, True) == owner_is_reverse(keys, f)
    assert not any(owns_frame([0], f, True) for f in range(30))
    assert [f for f in range(30) if not owns_frame([29], f, True)] == [29]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "volume_shape, prompts, match",
    [
        (
            (1, 48, 40, 30),
            [ObjectPrompt(1, 30, box=(1.0, 1.0, 5.0, 5.0))],
            r"key slice 30 is outside the volume \(0\.\.29\)",
        ),
        ((1, 48, 40, 30), [ObjectPrompt(1, -1, box=(1.0, 1.0, 5.0, 5.0))], r"key slice -1"),
        ((1, 48, 40, 30), [ObjectPrompt(1, 3, box=(0.0, 0.0, 40.0, 10.0))], r"box .* outside the 40x48 image"),
        (
            (1, 48, 40, 30),
            [ObjectPrompt(1, 3, box=(0.0, 0.0, 45.0, 10.0))],
            r"outside the 40x48",
        ),  # fits only if x/y swapped
        ((1, 48, 40, 30), [ObjectPrompt(1, 3, box=(9.0, 0.0, 4.0, 10.0))], r"x0, y0, x1, y1"),
        ((1, 48, 40, 30), [ObjectPrompt(1, 3, points=((40.0, 1.0),), point_labels=(1,))], r"point .* outside"),
        ((1, 48, 40, 30), [ObjectPrompt(1, 3, points=((4.0, 1.0),), point_labels=(1, 0))], r"one label"),
        ((1, 48, 40, 30), [ObjectPrompt(2, 7, mask=np.zeros((48, 40), bool))], r"mask prompt on slice 7 is empty"),
        ((1, 48, 40, 30), [ObjectPrompt(2, 7, mask=np.ones((40, 48), bool))], r"mask shape"),
        (
            (1, 48, 40, 30),
            [ObjectPrompt(2, 7, box=(1.0, 1.0, 3.0, 3.0), mask=np.ones((48, 40), bool))],
            r"either a mask",
        ),
        ((1, 48, 40, 30), [ObjectPrompt(2, 7)], r"box, points or a mask"),
        ((1, 48, 40, 30), [ObjectPrompt(0, 7, box=(1.0, 1.0, 3.0, 3.0))], r"positive"),
        ((1, 48, 40, 30), [], r"at least one prompt"),
        ((1, 48, 40), [ObjectPrompt(1, 0, box=(1.0, 1.0, 3.0, 3.0))], r"\(C, H, W, D\).*\(1, 48, 40\)"),
        ((48, 40, 30), [ObjectPrompt(1, 0, box=(1.0, 1.0, 3.0, 3.0))], r"\(C, H, W, D\)"),
        ((2, 48, 40, 30), [ObjectPrompt(1, 0, box=(1.0, 1.0, 3.0, 3.0))], r"C = 1 or 3"),
    ],
)
def test_invalid_prompts_and_volumes_raise(model, volume_shape, prompts, match):
    with pytest.raises(ValueError, match=match):
        propagate_volume(model, torch.zeros(volume_shape), prompts)


def test_second_object_invalid_is_reported_with_its_id(model):
    prompts = [ObjectPrompt(1, 3, box=(1.0, 1.0, 5.0, 5.0)), ObjectPrompt(7, 31, box=(1.0, 1.0, 5.0, 5.0))]
    with pytest.raises(ValueError, match=r"object 7: key slice 31"):
        propagate_volume(model, torch.zeros(1, 48, 40, 30), prompts)


# --------------------------------------------------------------------------- output dtype


@pytest.mark.slow
@pytest.mark.parametrize("obj_ids, dtype", [((255,), torch.uint8), ((256,), torch.int32), ((1, 300), torch.int32)])
def test_label_dtype_follows_max_object_id(model, obj_ids, dtype):
    volume = torch.rand(1, 16, 16, 1)  # one slice: only the prompted frame is decoded
    prompts = [ObjectPrompt(o, 0, box=(1.0 + 6 * n, 1.0, 6.0 + 6 * n, 9.0)) for n, o in enumerate(obj_ids)]
    labels = propagate_volume(model, volume, prompts)
    assert labels.shape == (16, 16, 1) and labels.dtype == dtype
    assert set(labels.unique().tolist()) <= {0, *obj_ids}


# --------------------------------------------------------------------------- inferer


@pytest.mark.slow
def test_propagation_inferer_on_collated_meta_batch(model):
    torch.manual_seed(5)
    mask = np.zeros((24, 20), dtype=bool)
    mask[4:12, 6:15] = True
    items = [
        {
            "image": MetaTensor(torch.rand(1, 24, 20, 2), affine=torch.diag(torch.tensor([0.8, 0.9, 2.5, 1.0]))),
            "prompts": [ObjectPrompt(obj_id=1, frame=1, box=(2.0, 3.0, 10.0, 12.0))],
        },
        {
            "image": MetaTensor(torch.rand(1, 24, 20, 2), affine=torch.diag(torch.tensor([1.5, 1.5, 3.0, 1.0]))),
            "prompts": [ObjectPrompt(obj_id=2, frame=0, mask=mask)],
        },
    ]
    batch = collate_with_prompts(items)
    assert all(isinstance(p, str) for p in batch["prompts"])
    inferer = PropagationInferer()
    out = inferer(batch["image"], model, prompts=batch["prompts"])
    assert isinstance(out, MetaTensor)
    assert out.shape == (2, 1, 24, 20, 2) and out.dtype == torch.float32
    assert torch.equal(out.affine, batch["image"].affine)
    assert out.affine.shape == (2, 4, 4) and float(out.affine[1, 2, 2]) == 3.0
    assert set(out[0].unique().tolist()) <= {0.0, 1.0}
    assert set(out[1].unique().tolist()) <= {0.0, 2.0}
    # same result from the prompt objects themselves, one volume at a time
    direct = propagate_volume(model, items[0]["image"], items[0]["prompts"])
    assert torch.equal(out[0, 0].as_tensor(), direct.float())
    # a DDP-style wrapper (network.module) is unwrapped
    wrapped = inferer(batch["image"][1:], SimpleNamespace(module=model), prompts=[items[1]["prompts"]])
    assert torch.equal(wrapped[0].as_tensor(), out[1].as_tensor())
    with pytest.raises(ValueError, match=r"1 prompt lists for a batch of 2"):
        inferer(batch["image"], model, prompts=batch["prompts"][:1])
