"""Bad input to the medsam2 inference: one clear error naming the file and the problem, no outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import MEDSAM2, error_chain

CONFIGS = MEDSAM2 / "configs"


def infer(tmp_path: Path, **overrides) -> Path:
    from monai.bundle import run

    out = tmp_path / "out"
    overrides.setdefault("checkpoint", "none")
    run(
        config_file=[str(CONFIGS / "inference.json"), str(CONFIGS / "tiny.json")],
        bundle_root=str(tmp_path),
        output_dir=str(out),
        logging_file=str(CONFIGS / "logging.conf"),
        **overrides,
    )
    return out


def nifti(path: Path, array: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


def prompts(path: Path, *objects: dict) -> Path:
    path.write_text(json.dumps({"objects": list(objects)}))
    return path


@pytest.fixture()
def volume(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    return nifti(tmp_path / "ct.nii.gz", rng.normal(40, 100, (32, 32, 10)).astype(np.float32))


def expect_error(tmp_path: Path, match: list[str], **overrides) -> None:
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(Exception) as info:
        infer(tmp_path, **overrides)
    text = error_chain(info.value)
    for fragment in match:
        assert fragment in text, f"{fragment!r} not in error:\n{text[-2000:]}"
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), "partial output left behind"
    for path, content in before.items():  # inputs unchanged
        assert path.read_bytes() == content


@pytest.mark.slow
def test_missing_image(tmp_path):
    p = prompts(tmp_path / "p.json", {"label": 1, "slice": 2, "box": [1, 1, 5, 5]})
    expect_error(tmp_path, ["missing.nii.gz"], input_image=str(tmp_path / "missing.nii.gz"), input_prompts=str(p))


@pytest.mark.slow
def test_corrupt_nifti(tmp_path, volume):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(volume.read_bytes()[:200])
    p = prompts(tmp_path / "p.json", {"label": 1, "slice": 2, "box": [1, 1, 5, 5]})
    expect_error(tmp_path, ["broken.nii.gz"], input_image=str(broken), input_prompts=str(p))


@pytest.mark.slow
def test_2d_image_is_not_a_volume(tmp_path):
    import cv2

    png = tmp_path / "slice.png"
    cv2.imwrite(str(png), (np.arange(32 * 32) % 255).reshape(32, 32).astype(np.uint8))
    p = prompts(tmp_path / "p.json", {"label": 1, "slice": 0, "box": [1, 1, 5, 5]})
    expect_error(tmp_path, ["slice.png", "not a 3D volume"], input_image=str(png), input_prompts=str(p))


@pytest.mark.slow
@pytest.mark.parametrize("fill, problem", [(np.nan, "NaN"), (7.0, "constant")])
def test_nan_or_constant_image(tmp_path, fill, problem):
    image = nifti(tmp_path / "bad.nii.gz", np.full((16, 16, 6), fill, np.float32))
    p = prompts(tmp_path / "p.json", {"label": 1, "slice": 2, "box": [1, 1, 5, 5]})
    expect_error(tmp_path, ["bad.nii.gz", problem], input_image=str(image), input_prompts=str(p))


@pytest.mark.slow
def test_box_outside_image(tmp_path, volume):
    p = prompts(tmp_path / "p.json", {"label": 1, "slice": 2, "box": [1, 1, 40, 5]})
    expect_error(tmp_path, ["p.json", "outside"], input_image=str(volume), input_prompts=str(p))


@pytest.mark.slow
def test_key_slice_outside_volume(tmp_path, volume):
    p = prompts(tmp_path / "p.json", {"label": 1, "slice": 10, "box": [1, 1, 5, 5]})
    expect_error(
        tmp_path, ["p.json", "key slice 10 is outside the volume"], input_image=str(volume), input_prompts=str(p)
    )


@pytest.mark.slow
def test_empty_label_for_requested_object(tmp_path, volume):
    label = np.zeros((32, 32, 10), np.uint8)
    label[5:9, 5:9, 3:6] = 1
    label_path = nifti(tmp_path / "seg.nii.gz", label)
    expect_error(
        tmp_path,
        ["seg.nii.gz", "[2]", "empty"],
        input_image=str(volume),
        input_label=str(label_path),
        prompt_labels=[1, 2],
    )


@pytest.mark.slow
def test_no_prompts(tmp_path, volume):
    expect_error(tmp_path, ["ct.nii.gz", "no prompts"], input_image=str(volume))


@pytest.mark.slow
def test_checkpoint_with_wrong_keys(tmp_path, volume):
    from monaiseg.networks import build_sam2_segmenter

    sd = build_sam2_segmenter("tiny", 256).state_dict()
    sd["extra.weight"] = sd.pop("no_mem_embed")
    bad = tmp_path / "bad_ckpt.pt"
    torch.save({"model": sd}, bad)
    p = prompts(tmp_path / "p.json", {"label": 1, "slice": 2, "box": [1, 1, 5, 5]})
    expect_error(
        tmp_path,
        ["bad_ckpt.pt", "missing keys (1): no_mem_embed", "unexpected keys (1): extra.weight"],
        input_image=str(volume),
        input_prompts=str(p),
        checkpoint=str(bad),
    )
