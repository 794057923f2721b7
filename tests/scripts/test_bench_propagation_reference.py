"""`propagate_volume` against sam2's own video-predictor API on the same in-memory frames, as
scripts/bench_propagation.py runs them (its method (c) must equal (a)).

The reference (the script's `reference_propagate` and `memory_state`) stacks all frames, adds the prompts, runs
`propagate_in_video` forward, `reset_state`, prompts again, reverse, and merges the masks as
ours does: lazy frames, dropped outputs and shared key-slice features must change nothing.
"""

import runpy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO

from monaiseg.inferers.propagation import memory_window, owns_frame, propagate_volume
from monaiseg.networks.sam2_builder import build_sam2_segmenter
from monaiseg.prompts import ObjectPrompt, mask_box

bench = SimpleNamespace(**runpy.run_path(str(REPO / "scripts" / "bench_propagation.py")))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sam2_segmenter("tiny", image_size=256).eval()


def _both(model, volume, prompts):
    ours_stats, ref_stats = {}, {}
    ours = propagate_volume(model, volume, prompts, stats=ours_stats)
    ref = bench.reference_propagate(model, bench.memory_state(model, volume), prompts, ref_stats)
    return ours, ref, ours_stats["max_stored_frames"], ref_stats["max_stored_frames"]


@pytest.mark.slow
def test_two_objects_match_sam2_predictor(model):
    volume, _, prompts = bench.make_case(size=64, depth=10, objects=2)
    assert len({p.frame for p in prompts}) == 2  # different key slices: both passes matter
    ours, ref, _, _ = _both(model, volume, prompts)
    assert ours.shape == (64, 64, 10)
    assert set(np.unique(ours.numpy())) - {0}, "random-init model should still paint something"
    assert torch.equal(ours, ref)


@pytest.mark.slow
def test_long_volume_drops_outputs_and_still_matches(model):
    depth, key = 20, 1
    volume, label, _ = bench.make_case(size=64, depth=depth, objects=1)
    aorta = label == 5  # spans every slice: a prompt near the start gives a long forward pass
    box = mask_box(aorta[..., key])
    prompts = [ObjectPrompt(obj_id=5, frame=key, box=box)]
    ours, ref, ours_stored, ref_stored = _both(model, volume, prompts)
    assert torch.equal(ours, ref)
    window = memory_window(model)
    assert depth - key - 1 > window  # outputs must be dropped for this test to mean anything
    assert ours_stored <= len(prompts) * window
    assert ref_stored == depth - key - 1  # the reference keeps every tracked frame's output


@pytest.mark.slow
def test_every_owned_slice_is_tracked(model, monkeypatch):
    volume, _, prompts = bench.make_case(size=64, depth=10, objects=2)
    visited = {False: set(), True: set()}
    original = model.propagate_in_video

    def recording(state, *args, reverse=False, **kwargs):
        for frame, obj_ids, masks in original(state, *args, reverse=reverse, **kwargs):
            visited[reverse].add(frame)
            yield frame, obj_ids, masks

    monkeypatch.setattr(model, "propagate_in_video", recording)
    propagate_volume(model, volume, prompts)
    for p in prompts:
        keys = [p.frame]
        missing = [k for k in range(10) if k not in visited[owns_frame(keys, k, reverse=True)]]
        assert not missing, f"object {p.obj_id} (key slice {p.frame}): slices {missing} never tracked"
