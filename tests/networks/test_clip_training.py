"""MedSAM2 2025 variant: clip sampling and differentiable tracking through clips."""

from __future__ import annotations

import pytest
import torch
from conftest import MEDSAM2
from monai.data import MetaTensor

from monaiseg.networks import build_sam2_segmenter
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


def test_forward_clip_tracks_with_memory_and_is_differentiable():
    torch.manual_seed(0)
    model = build_sam2_segmenter("tiny", 256).train()
    clips = torch.rand(2, 1, 48, 48, 3)
    logits = model(clips, boxes=torch.tensor([[10, 10, 30, 30], [5, 5, 20, 25]]))
    assert logits.shape == (2, 1, 48, 48, 3)
    logits.square().mean().backward()
    with_grad = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert {"image_encoder", "memory_attention", "memory_encoder", "sam_mask_decoder"} <= with_grad
    with pytest.raises(ValueError, match="first frame"):
        model(clips)


def test_train_2025_variant_through_the_bundle(synthetic_ct, tmp_path):
    from monai.bundle import run

    configs = [str(MEDSAM2 / "configs" / n) for n in ("train.json", "medsam2_2025.json", "tiny.json")]
    run(
        config_file=configs,
        bundle_root=str(tmp_path),
        dataset_dir=str(synthetic_ct),
        clip_length=4,
        batch_size=2,
        logging_file=str(MEDSAM2 / "configs" / "logging.conf"),
    )
    content = torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)
    build_sam2_segmenter("tiny", 256).load_state_dict(content["model"], strict=True)
