"""MedSAM2 2025 variant: clip sampling (RandClipd) and the box of a clip."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from monaiseg.transforms import RandBoxPromptd, RandClipd


def test_rand_clip_starts_on_the_object_and_keeps_only_it():
    label = torch.zeros(1, 8, 8, 10)
    label[0, 2:5, 2:5, 6:9] = 3  # object 3 on slices 6..8
    label[0, 0, 0, 0:2] = 1
    for seed in range(6):
        t = RandClipd(keys=["image", "label"], clip_length=4, labels=[3])
        t.set_random_state(seed)
        out = t({"image": torch.arange(10.0).expand(1, 8, 8, 10).clone(), "label": label})
        slices = out["image"][0, 0, 0].tolist()
        assert out["image"].shape == (1, 8, 8, 4) and out["label"].shape == (1, 8, 8, 4)
        assert set(out["label"].unique().tolist()) <= {0, 3}
        assert (out["label"][..., 0] == 3).sum() == 9  # the clip starts on a slice holding the object
        assert slices[0] in (6, 7, 8)
        step = 1 if slices[1] > slices[0] else -1  # consecutive slices, forward or backward
        assert slices == [slices[0] + step * i for i in range(4)]
        assert all(0 <= s < 10 for s in slices)


def test_rand_clip_errors_name_the_file():
    label = MetaTensor(torch.zeros(1, 4, 4, 3), meta={"filename_or_obj": "case_7.nii.gz"})
    with pytest.raises(ValueError, match="case_7.nii.gz.*fewer than the clip length"):
        RandClipd(clip_length=4)({"image": label.clone(), "label": label})
    with pytest.raises(ValueError, match="case_7.nii.gz.*empty label"):
        RandClipd(clip_length=2)({"image": label.clone(), "label": label})


def test_box_of_a_clip_is_taken_on_frame_zero():
    label = torch.zeros(1, 16, 16, 3)
    label[0, 2:6, 3:9, 0] = 1  # rows 2..5, columns 3..8 on frame 0
    label[0, 10:14, 10:14, 1:] = 1
    out = RandBoxPromptd(keys="label", jitter=0)({"label": label})
    assert out["box"].tolist() == [3.0, 2.0, 8.0, 5.0]
