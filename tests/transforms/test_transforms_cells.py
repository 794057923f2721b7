"""BloodCellSAM2 transforms: CLAHE, elastic deformation, density maps, instance and track sampling, CTC loading."""

import cv2
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monaiseg.data.synthetic_cells import make_cell_video, make_smear
from monaiseg.prompts import mask_box
from monaiseg.transforms.cells import CLAHE, CLAHEd, DensityMapd, LoadCTCd, RandCellTracksd, RandElasticd
from monaiseg.transforms.checks import CheckMaskValuesd
from monaiseg.transforms.prompts import RandBoxPromptd


def _local_contrast(image: np.ndarray, block: int = 8) -> float:
    """Mean standard deviation over block x block tiles of a (S0, S1) image."""
    s0, s1 = (d // block * block for d in image.shape)
    tiles = image[:s0, :s1].reshape(s0 // block, block, s1 // block, block)
    return float(tiles.std(axis=(1, 3)).mean())


def _low_contrast(channels: int) -> torch.Tensor:
    """(C, 64, 64) in [0.45, 0.55]: a smooth pattern plus mild noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    pattern = 0.5 + 0.04 * np.sin(xx / 3.0) * np.cos(yy / 5.0) + rng.normal(0, 0.005, (64, 64))
    tint = np.array([1.0, 0.85, 0.95])[:channels, None, None]
    return torch.as_tensor(pattern[None] * tint, dtype=torch.float32)


@pytest.mark.parametrize("channels", [1, 3])
def test_clahe_raises_local_contrast_and_keeps_shape_range_meta(channels):
    image = MetaTensor(_low_contrast(channels), meta={"filename_or_obj": "smear.png"})
    out = CLAHEd("image")({"image": image})["image"]
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "smear.png"
    assert out.shape == image.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert _local_contrast(out.numpy().mean(0)) > 2 * _local_contrast(image.numpy().mean(0))
    if channels == 3:  # equalised on L of Lab: the tint (channel order of brightness) is kept
        means = out.numpy().reshape(3, -1).mean(1)
        assert means[0] > means[2] > means[1]


def test_clahe_numpy_in_numpy_out_and_bad_channels():
    out = CLAHE(clip_limit=2.0, tile_grid_size=(4, 8))(_low_contrast(1).numpy())
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (1, 64, 64)
    bad = MetaTensor(torch.zeros(2, 16, 16), meta={"filename_or_obj": "two_channels.png"})
    with pytest.raises(ValueError, match=r"two_channels.png: .*C = 1 \(grey\) or 3 \(RGB\)"):
        CLAHEd("image")({"image": bad})


def _disc_pair(size: int = 64):
    label = np.zeros((size, size), np.int32)
    cv2.circle(label, (size // 2, size // 2), size // 5, 1, -1)
    cv2.circle(label, (size // 4, size // 4), size // 8, 2, -1)
    image = torch.as_tensor(np.stack([label == 1, label == 2, label > 0]), dtype=torch.float32)
    return {"image": image, "label": MetaTensor(torch.as_tensor(label)[None], meta={"filename_or_obj": "label.png"})}


def test_elastic_moves_image_and_label_identically():
    data = _disc_pair()
    t = RandElasticd(("image", "label"), alpha=300.0, sigma=6.0, prob=1.0)
    t.set_random_state(7)
    out = t(data)
    label, image = out["label"], out["image"]
    assert isinstance(label, MetaTensor) and label.meta["filename_or_obj"] == "label.png"
    assert label.dtype == data["label"].dtype and set(torch.unique(label).tolist()) <= {0, 1, 2}
    assert (label != data["label"]).sum() > 50  # it moved
    for value, channel in ((1, 0), (2, 1)):  # bilinear image, thresholded, lands where the nearest label does
        warped, moved = image[channel] > 0.5, label[0] == value
        assert (warped & moved).sum() / (warped | moved).sum() > 0.9
    t.set_random_state(7)
    again = t(_disc_pair())
    assert torch.equal(again["label"], label) and torch.equal(again["image"], image)
    t.set_random_state(8)
    assert not torch.equal(t(_disc_pair())["label"], label)


def test_elastic_alpha_is_in_pixels_and_prob_zero_is_identity():
    """Simard: std of alpha * (G_sigma * U[-1, 1]) = alpha / sqrt(12 pi sigma^2) px (= 1.43 px at 35, 4)."""
    t = RandElasticd("image", alpha=35.0, sigma=4.0, prob=1.0, mode="bilinear")
    t.set_random_state(0)
    t.randomize((128, 160))
    shifts = t.displacement[0].numpy() * np.array([160, 128]) / 2  # grid units -> px (x along S1, y along S0)
    expected = 35.0 / np.sqrt(12 * np.pi * 4.0**2)
    assert shifts.shape == (128, 160, 2)
    assert abs(shifts.std() / expected - 1) < 0.2
    data = _disc_pair()
    assert RandElasticd(("image", "label"), prob=0.0)(data)["image"] is data["image"]


def test_elastic_clip_uses_one_field_for_all_frames():
    frame = _disc_pair()["image"]
    clip = {"image": frame[..., None].repeat(1, 1, 1, 3), "label": _disc_pair()["label"][..., None].repeat(1, 1, 1, 3)}
    t = RandElasticd(("image", "label"), alpha=200.0, sigma=5.0, prob=1.0)
    t.set_random_state(1)
    out = t(clip)
    assert out["image"].shape == (3, 64, 64, 3) and out["label"].shape == (1, 64, 64, 3)
    assert torch.equal(out["image"][..., 0], out["image"][..., 2]) and not torch.equal(out["image"][..., 0], frame)
    with pytest.raises(ValueError, match="label.png: spatial size"):
        t({"image": frame, "label": _disc_pair(32)["label"]})


def test_density_map_sums_to_cell_count():
    _, instances, _ = make_smear((96, 128), num_cells=5, seed=3)
    label = torch.as_tensor(instances.astype(np.int32))[None]
    density = DensityMapd(sigma=4.0)({"label": label})["density"]
    assert density.shape == (1, 96, 128) and density.dtype == torch.float32
    assert float(density.sum()) == pytest.approx(5.0, abs=1e-4)
    centre = np.argwhere(instances == 1).mean(0).round().astype(int)
    window = density[0, centre[0] - 2 : centre[0] + 3, centre[1] - 2 : centre[1] + 3]
    assert float(window.max()) == pytest.approx(1 / (2 * np.pi * 16), rel=0.15)  # a unit Gaussian's peak
    small = DensityMapd(sigma=4.0, output_size=(24, 32))({"label": label})["density"]
    assert small.shape == (1, 24, 32) and float(small.sum()) == pytest.approx(5.0, abs=1e-4)
    corner = torch.zeros(1, 40, 40, dtype=torch.int32)
    corner[0, :3, :3] = 1  # a cell in the corner keeps its full mass
    assert float(DensityMapd()({"label": corner})["density"].sum()) == pytest.approx(1.0, abs=1e-4)
    assert float(DensityMapd()({"label": torch.zeros(1, 40, 40)})["density"].abs().sum()) == 0
    with pytest.raises(ValueError, match="video.tif: a density map needs a"):
        DensityMapd()({"label": MetaTensor(torch.zeros(1, 8, 8, 3), meta={"filename_or_obj": "video.tif"})})


def test_instance_sampling_is_randboxpromptd():
    """RandBoxPromptd already turns an instance map into one random cell's mask and a jittered box."""
    _, instances, _ = make_smear((128, 128), num_cells=6, seed=1)
    label = torch.as_tensor(instances.astype(np.int32))[None]
    t = RandBoxPromptd("label", box_key="box", jitter=5.0)
    picked = set()
    for seed in range(30):
        t.set_random_state(seed)
        out = t({"label": label})
        mask = out["label"]
        assert mask.shape == (1, 128, 128) and mask.dtype == torch.float32
        value = int(torch.unique(label[mask > 0]).item())  # exactly one cell
        assert torch.equal(mask[0] > 0, label[0] == value)
        exact = np.asarray(mask_box(instances == value), np.float32)
        assert np.abs(out["box"].numpy() - exact).max() <= 5.0 * 128 / 256 + 1e-5
        picked.add(value)
    assert picked == set(range(1, 7))


def _video_data(num_frames=8, seed=2):
    frames, masks, parents = make_cell_video((64, 80), num_frames=num_frames, num_cells=4, seed=seed)
    image = torch.as_tensor(frames).permute(3, 2, 1, 0).float() / 255  # (3, S0, S1, T) as LoadVideod / LoadCTCd
    label = torch.as_tensor(masks.astype(np.int32)).permute(2, 1, 0)[None]
    label = MetaTensor(label, meta={"filename_or_obj": "01_GT"})
    return {"image": image, "label": label}, parents


def test_track_clips_one_channel_per_cell():
    data, _ = _video_data()
    tracks = data["label"][0]
    t = RandCellTracksd(clip_length=4, max_cells=3, jitter=2.0)
    for seed in range(5):
        t.set_random_state(seed)
        out = t(dict(data))
        ids = out["track_ids"].tolist()
        k = len(ids)
        assert out["image"].shape == (3, 80, 64, 4) and out["label"].shape == (k, 80, 64, 4)
        assert out["box"].shape == (k, 4)
        assert k == 3 and ids == sorted(ids) and out["label"].dtype == torch.float32
        start = next(s for s in range(5) if torch.equal(out["image"], data["image"][..., s : s + 4]))
        for channel, track in enumerate(ids):
            assert torch.equal(out["label"][channel] > 0, tracks[..., start : start + 4] == track)
            exact = np.asarray(mask_box((tracks[..., start] == track).numpy()), np.float32)
            assert np.abs(out["box"][channel].numpy() - exact).max() <= 2.0 * 80 / 256 + 1e-5
    t.clip_length = 8  # a curriculum grows the clip between epochs
    assert t(dict(data))["image"].shape[-1] == 8


def test_track_clip_spans_a_division():
    data, parents = _video_data()
    out = RandCellTracksd(clip_length=8, max_cells=8)(dict(data))
    ids = out["track_ids"].tolist()
    mother = next(iter(parents.values()))
    assert ids == [1, 2, 3, mother]  # daughters are not on frame 0
    present = out["label"][ids.index(mother)].sum((0, 1)) > 0
    division = int(np.argmin(present.numpy()))
    assert present[:division].all() and not present[division:].any()  # empty once the mother divided


def test_track_clip_errors_name_the_file():
    data, _ = _video_data(num_frames=3)
    with pytest.raises(ValueError, match="01_GT: 3 frames, fewer than the clip length 4"):
        RandCellTracksd(clip_length=4)(dict(data))
    empty = {"image": data["image"], "label": MetaTensor(torch.zeros(1, 80, 64, 3), meta={"filename_or_obj": "empty"})}
    with pytest.raises(ValueError, match="empty: no cell"):
        RandCellTracksd(clip_length=2)(empty)


def test_load_ctc_matches_loadvideod_axes(tmp_path):
    from monaiseg.data.ctc import write_ctc_gt
    from monaiseg.transforms.video import LoadVideod

    frames, masks, parents = make_cell_video((48, 64), num_frames=4, num_cells=3, seed=0)
    write_ctc_gt(tmp_path, "01", frames, masks, parents)
    for t, frame in enumerate(frames):  # the same frames as a PNG folder for LoadVideod
        (tmp_path / "png").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "png" / f"{t:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out = LoadCTCd()({"image": str(tmp_path / "01"), "label": str(tmp_path / "01_GT" / "TRA")})
    image, label = out["image"], out["label"]
    assert image.shape == (3, 64, 48, 4) and image.dtype == torch.float32
    assert torch.equal(image, LoadVideod("image")({"image": str(tmp_path / "png")})["image"])
    assert label.shape == (1, 64, 48, 4) and label.dtype == torch.int32
    assert torch.equal(label[0], torch.as_tensor(masks.astype(np.int32)).permute(2, 1, 0))
    assert image.meta["filename_or_obj"] == str(tmp_path / "01")
    assert torch.equal(LoadCTCd("label")({"label": str(tmp_path / "01_GT")})["label"], label)  # GT folder works too


def test_load_ctc_grey_16bit_and_missing_folder(tmp_path):
    from monaiseg.data.ctc import write_ctc_gt

    frames = np.zeros((2, 8, 10), np.uint16)
    frames[0, 1, 2], frames[1, 3, 4] = 1000, 4000
    masks = np.zeros((2, 8, 10), np.uint16)
    masks[:, 2:4, 2:5] = 1
    write_ctc_gt(tmp_path, "02", frames, masks)
    image = LoadCTCd(keys="image")({"image": tmp_path / "02"})["image"]
    assert image.shape == (1, 10, 8, 2) and float(image.max()) == 1.0
    assert float(image[0, 2, 1, 0]) == pytest.approx(0.25) and float(image[0, 4, 3, 1]) == 1.0
    with pytest.raises(FileNotFoundError, match="03: CTC sequence folder not found"):
        LoadCTCd()({"image": tmp_path / "03", "label": tmp_path / "03_GT/TRA"})
    with pytest.raises(FileNotFoundError, match="03_GT/TRA: CTC tracking ground-truth folder not found"):
        LoadCTCd()({"image": tmp_path / "02", "label": tmp_path / "03_GT/TRA"})


def test_check_mask_values():
    mask = MetaTensor(torch.tensor([[[0, 128], [255, 128]]]), meta={"filename_or_obj": "001.png"})
    check = CheckMaskValuesd("label", allowed=(0, 128, 255))
    assert check({"label": mask})["label"] is mask
    mask[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"001.png: mask values \[7\] are not among the allowed \[0, 128, 255\]"):
        check({"label": mask})
