"""VolumeSession with a random-init sam2.1 tiny at 64 (masks are arbitrary): its first propagation
equals `propagate_volume`; a correction re-tracks only from its slice outward and leaves every other
slice as it was; undo restores the labels exactly; reset drops the object; bad interactions change
nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monaiseg.inferers import SessionError, VolumeSession, propagate_volume
from monaiseg.inferers.session import owns_frame
from monaiseg.inferers.volume_session import merge_prompt
from monaiseg.networks import build_sam2_segmenter
from monaiseg.prompts import ObjectPrompt

DEPTH = 8
PROMPTS = [
    ObjectPrompt(1, 3, box=(6.0, 6.0, 20.0, 22.0)),
    ObjectPrompt(3, 5, points=((24.0, 20.0),), point_labels=(1,)),
]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sam2_segmenter("tiny", image_size=64).eval()


@pytest.fixture(scope="module")
def volume():
    torch.manual_seed(1)
    vol = torch.zeros(1, 32, 32, DEPTH)
    vol[:, 8:22, 6:24] = 0.8  # a bright block through all slices
    return (vol + 0.1 * torch.rand_like(vol)).clamp(0, 1)


@pytest.fixture(scope="module")
def started(model, volume):
    session = VolumeSession(model, volume)
    labels = session.start(PROMPTS).clone()
    return session, labels


@pytest.mark.slow
def test_start_equals_propagate_volume(model, volume, started):
    session, labels = started
    assert torch.equal(labels, propagate_volume(model, volume, PROMPTS))
    assert session.objects == [1, 3] and all(not session.history[o] for o in session.objects)
    assert session.nbytes() > volume.nbytes


@pytest.mark.slow
def test_correction_changes_only_slices_it_retracked_and_undo_restores(started):
    session, labels = started
    before = session.labels.clone()
    changed = session.correct(ObjectPrompt(1, 6, points=((12.0, 12.0),), point_labels=(0,)))
    assert 6 in changed and changed == sorted(changed)
    keys = sorted(session.keys[1])
    assert keys == [3, 6]
    # forward from 6 and backward from 5 down to the slices still closer to key 3
    assert all(k >= 6 or owns_frame(keys, k, reverse=True) for k in changed)
    untouched = [k for k in range(DEPTH) if k not in changed]
    assert all(torch.equal(session.labels[..., k], before[..., k]) for k in untouched)
    assert session.history[1] and not session.history[3]
    after = session.labels.clone()
    undone = session.undo(1)
    assert undone == changed and torch.equal(session.labels, before) and sorted(session.keys[1]) == [3]
    redone = session.correct(ObjectPrompt(1, 6, points=((12.0, 12.0),), point_labels=(0,)))
    assert redone == changed and torch.equal(session.labels, after)  # deterministic
    session.undo(1)


def test_clicks_add_to_the_slice_and_a_box_or_mask_replaces_it():
    box = ObjectPrompt(1, 2, box=(1.0, 1.0, 9.0, 9.0), points=((2.0, 2.0),), point_labels=(1,))
    click = ObjectPrompt(1, 2, points=((5.0, 5.0),), point_labels=(0,))
    merged = merge_prompt(box, click)
    assert merged.box == box.box and merged.points == ((2.0, 2.0), (5.0, 5.0)) and merged.point_labels == (1, 0)
    new_box = ObjectPrompt(1, 2, box=(0.0, 0.0, 4.0, 4.0))
    assert merge_prompt(merged, new_box) == new_box
    mask = ObjectPrompt(1, 2, mask=np.ones((8, 8), bool))
    assert merge_prompt(merged, mask) is mask and merge_prompt(mask, click) is click


@pytest.mark.slow
def test_mask_seeds_the_object_on_its_slice_and_reset_drops_the_object(model, volume):
    session = VolumeSession(model, volume)
    session.start(PROMPTS)
    mask = np.zeros((32, 32), bool)
    mask[10:20, 8:18] = True
    changed = session.correct(ObjectPrompt(3, 7, mask=mask))
    assert 7 in changed and 7 in session.keys[3]
    assert session.prompts[3, 7].mask is mask
    session.reset(3)
    assert session.objects == [1] and 3 not in torch.unique(session.labels).tolist()
    assert all(torch.equal(session.labels[..., k] == 1, session.object_mask(1, k)) for k in range(DEPTH))


@pytest.mark.slow
@pytest.mark.parametrize(
    "action, status, words",
    [
        (lambda s: s.correct(ObjectPrompt(2, 3, points=((1.0, 1.0),), point_labels=(1,))), 404, "not in this session"),
        (lambda s: s.correct(ObjectPrompt(1, DEPTH, points=((1.0, 1.0),), point_labels=(1,))), 400, "outside"),
        (lambda s: s.correct(ObjectPrompt(1, 3, points=((40.0, 1.0),), point_labels=(1,))), 400, "outside"),
        (lambda s: s.correct(ObjectPrompt(1, 3, mask=np.ones((4, 4), bool))), 400, "mask shape"),
        (lambda s: s.undo(3), 409, "nothing to undo"),
        (lambda s: s.reset(7), 404, "not in this session"),
    ],
)
def test_bad_interactions_raise_and_change_nothing(started, action, status, words):
    session, labels = started
    before = (session.labels.clone(), {o: sorted(k) for o, k in session.keys.items()}, dict(session.prompts))
    with pytest.raises(SessionError, match=words) as err:
        action(session)
    assert err.value.status == status
    assert torch.equal(session.labels, before[0]) and torch.equal(session.labels, labels)
    assert {o: sorted(k) for o, k in session.keys.items()} == before[1] and session.prompts == before[2]
