"""Blood-cell datasets: WBC CellaVision and LISC converters, synthetic smears and videos."""

import json
import runpy
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO, SHARED
from monai.transforms import LoadImaged
from PIL import Image

from monaiseg.data.cells import CELL_TYPES, prepare_lisc, prepare_wbc
from monaiseg.data.synthetic_cells import main, make_cell_video, make_smear, make_synthetic_cell_dataset

WBC_REAL = SHARED / "data" / "wbc_cellavision"
SPLITS = ("training", "validation", "testing")


def _items(datalist):
    content = json.loads(datalist.read_text())
    return [item for split in SPLITS for item in content[split]]


def _read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _touching(instances: np.ndarray) -> bool:
    """Two different cells share a (4-neighbour) border."""
    for a, b in ((instances[1:], instances[:-1]), (instances[:, 1:], instances[:, :-1])):
        if ((a > 0) & (b > 0) & (a != b)).any():
            return True
    return False


def _snapshot(folder):
    return {p.relative_to(folder): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")}


def _no_output(out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


# ---------------------------------------------------------------- WBC (fake tree in the real layout)


def _cell_mask(shape, cells, nucleus=255, cytoplasm=128):
    """uint8 WBC mask with discs (row, col, radius): cytoplasm ring around a nucleus of half the radius."""
    mask = np.zeros(shape, np.uint8)
    for cy, cx, r in cells:
        cv2.circle(mask, (cx, cy), r, cytoplasm, -1)
        cv2.circle(mask, (cx, cy), r // 2, nucleus, -1)
    return mask


@pytest.fixture
def wbc_src(tmp_path):
    """Six 40x48 images: 001 has two cells and a 3-px speck, the others one cell; classes 1..5, 1."""
    src = tmp_path / "wbc"
    src.mkdir()
    rng = np.random.default_rng(0)
    for n in range(1, 7):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(src / f"{n:03d}.bmp")
        cells = [(20, 14, 9), (20, 36, 8)] if n == 1 else [(20, 24, 10)]
        mask = _cell_mask((40, 48), cells)
        if n == 1:
            mask[1:4, 46] = 128  # tiny component, below min_area
        Image.fromarray(mask).save(src / f"{n:03d}.png")
    (src / "class_labels.csv").write_text("image ID,class\n" + "".join(f"{n},{(n - 1) % 5 + 1}\n" for n in range(1, 7)))
    return src


def test_wbc_converts_fake_tree(wbc_src, tmp_path):
    before = _snapshot(wbc_src)
    datalist = prepare_wbc(wbc_src, tmp_path / "out", seed=0)
    out = tmp_path / "out"
    assert datalist == out / "datalist.json"
    content = json.loads(datalist.read_text())
    assert content["cell_types"] == {str(k): v for k, v in CELL_TYPES.items()}
    assert [len(content[s]) for s in SPLITS] == [4, 1, 1]
    items = {item["image"]: item for item in _items(datalist)}
    assert sorted(items) == [f"images/{n:03d}.png" for n in range(1, 7)]
    for n in range(1, 7):
        item = items[f"images/{n:03d}.png"]
        assert item["label"] == f"labels/{n:03d}.png" and item["cell_type"] == (n - 1) % 5 + 1
        image = cv2.cvtColor(_read(out / item["image"]), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(image, np.asarray(Image.open(wbc_src / f"{n:03d}.bmp")))
        label = _read(out / item["label"])
        assert label.dtype == np.uint16 and label.shape == (40, 48)
        foreground = np.asarray(Image.open(wbc_src / f"{n:03d}.png")) > 0
        if n == 1:
            foreground[1:4, 46] = False  # the speck is dropped
        np.testing.assert_array_equal(label > 0, foreground)
        assert np.unique(label).tolist() == ([0, 1, 2] if n == 1 else [0, 1])
    label = _read(out / "labels/001.png")
    assert label[20, 14] != label[20, 36] and label[2, 46] == 0
    loaded = LoadImaged(("image", "label"), ensure_channel_first=True)(  # as the bundle reads them: (C, x, y)
        {"image": str(out / "images/001.png"), "label": str(out / "labels/001.png")}
    )
    assert loaded["image"].shape == (3, 48, 40) and loaded["label"].shape == (1, 48, 40)
    np.testing.assert_array_equal(loaded["label"][0].numpy().T, label)
    assert _snapshot(wbc_src) == before  # source untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_wbc_cli_prints_split_counts(wbc_src, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["prepare_wbc.py", "--src", str(wbc_src), "--out", str(tmp_path / "out")])
    runpy.run_path(str(REPO / "scripts" / "prepare_wbc.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "training: 4 images" in printed and "validation: 1 images" in printed and "testing: 1 images" in printed


def _break(src, kind):
    """Damage the fake tree; return the name the error must mention and a regex of the problem."""
    if kind == "values":
        mask = np.asarray(Image.open(src / "003.png")).copy()
        mask[mask == 128] = 7
        Image.fromarray(mask).save(src / "003.png")
        return "003.png", r"\[7\]"
    if kind == "size":
        Image.fromarray(np.zeros((40, 40), np.uint8)).save(src / "004.png")
        return "004.png", "40x40.*48x40"
    if kind == "grey":
        Image.fromarray(np.zeros((40, 48), np.uint8)).save(src / "002.bmp")
        return "002.bmp", r"8-bit RGB.*1 channel"
    if kind == "rgba":  # PIL reads by content, not by suffix
        Image.fromarray(np.zeros((40, 48, 4), np.uint8)).save(src / "002.bmp", format="PNG")
        return "002.bmp", r"8-bit RGB.*4 channel"
    if kind == "1-bit":
        Image.fromarray(np.zeros((40, 48), np.uint8)).convert("1").save(src / "002.bmp")
        return "002.bmp", r"8-bit RGB.*mode '1'"
    if kind == "mask_missing":
        (src / "005.png").unlink()
        return "005.png", "not found"
    if kind == "csv_row":
        (src / "class_labels.csv").write_text("image ID,class\n1,1\n2,2\n3,3\n4,4\n6,5\n")
        return "class_labels.csv", "no row for image 005.bmp"
    (src / "class_labels.csv").unlink()
    return "class_labels.csv", "not found"


@pytest.mark.parametrize("kind", ["values", "size", "grey", "rgba", "1-bit", "mask_missing", "csv_row", "csv_missing"])
def test_wbc_bad_input_one_clear_error_no_output(wbc_src, tmp_path, kind):
    name, problem = _break(wbc_src, kind)
    with pytest.raises((ValueError, FileNotFoundError), match=problem) as info:
        prepare_wbc(wbc_src, tmp_path / "out")
    assert name in str(info.value)
    _no_output(tmp_path / "out")


def test_wbc_snaps_a_few_stray_mask_values(wbc_src, tmp_path):
    """A few odd values (as in the real masks 034, 035, 047, 050, 076) go to the nearest of 0 / 128 / 255."""
    mask = np.asarray(Image.open(wbc_src / "003.png")).copy()
    mask[2, 2:4] = 9  # -> 0, background
    mask[20, 15] = 120  # -> 128, cytoplasm
    Image.fromarray(mask).save(wbc_src / "003.png")
    prepare_wbc(wbc_src, tmp_path / "out")
    label = _read(tmp_path / "out" / "labels/003.png")
    assert label[2, 2:4].tolist() == [0, 0] and label[20, 15] == 1
    assert np.unique(label).tolist() == [0, 1]


def test_wbc_refuses_to_overwrite(wbc_src, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="out"):
        prepare_wbc(wbc_src, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


@pytest.mark.skipif(not WBC_REAL.is_dir(), reason=f"real WBC sample data not found at {WBC_REAL}")
def test_wbc_real_data(tmp_path):
    datalist = prepare_wbc(WBC_REAL, tmp_path / "wbc")
    content = json.loads(datalist.read_text())
    assert [len(content[s]) for s in SPLITS] == [70, 15, 15]
    classes = dict(line.split(",") for line in (WBC_REAL / "class_labels.csv").read_text().split()[2:])
    for item in _items(datalist):
        stem = item["image"][len("images/") : -len(".png")]
        assert item["cell_type"] == int(classes[str(int(stem))])
        label = _read(tmp_path / "wbc" / item["label"])
        assert label.dtype == np.uint16 and label.shape == (300, 300) and label.max() >= 1
    assert prepare_wbc(WBC_REAL, tmp_path / "again").read_text() == datalist.read_text()  # fixed seed


# ---------------------------------------------------------------- LISC (fake tree in the release layout)

LISC_SHAPE = (48, 60)  # (rows, cols) of the fake images; the real ones are 576x720


def _lisc_image(path, rng):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*LISC_SHAPE, 3), dtype=np.uint8)).save(path)


def _lisc_mask(path, cells, margin=0, rgb=False):
    """Grey-level mask (nucleus 255, cytoplasm 128) of discs (row, col, r), ``margin`` px smaller per side."""
    mask = _cell_mask(LISC_SHAPE, cells)[margin : LISC_SHAPE[0] - margin, margin : LISC_SHAPE[1] - margin]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.repeat(mask[..., None], 3, -1) if rgb else mask).save(path)


@pytest.fixture
def lisc_src(tmp_path):
    """LISC Database with one or two images per class, one image without ground truth, one 'mixt' image."""
    rng = np.random.default_rng(1)
    root = tmp_path / "download" / "LISC Database"
    main_dir, truth = root / "Main Dataset", root / "Ground Truth Segmentation"
    for folder in ("Baso", "eosi", "lymp", "mixt", "mono", "neut"):
        for n in (1, 2) if folder in ("Baso", "neut") else (1,):
            _lisc_image(main_dir / folder / f"{n}.bmp", rng)
            cells = [(20, 15, 9), (24, 42, 10)] if folder == "lymp" else [(24, 30, 12)]
            _lisc_mask(
                truth / folder / "areaforexpert1" / f"{n}_expert.bmp",
                cells,
                margin=4 if folder == "Baso" else 0,
                rgb=folder == "mono",
            )
    _lisc_image(main_dir / "eosi" / "10.bmp", rng)  # no ground truth
    (root / "More Dataset without Ground Truth" / "alll").mkdir(parents=True)
    return tmp_path / "download"


def test_lisc_converts_release_layout(lisc_src, tmp_path):
    datalist = prepare_lisc(lisc_src, tmp_path / "lisc", seed=0)
    content = json.loads(datalist.read_text())
    items = {item["image"]: item for item in _items(datalist)}
    assert sum(len(content[s]) for s in SPLITS) == 7 and all(content[s] for s in SPLITS)
    assert {k: v["cell_type"] for k, v in items.items()} == {
        "images/baso_1.png": 5,
        "images/baso_2.png": 5,
        "images/eosi_1.png": 4,
        "images/lymp_1.png": 2,
        "images/mono_1.png": 3,
        "images/neut_1.png": 1,
        "images/neut_2.png": 1,
    }
    assert content["skipped"] == {
        "mixed cell types": ["Main Dataset/mixt/1.bmp"],
        "no ground truth": ["Main Dataset/eosi/10.bmp"],
    }
    lymp = _read(tmp_path / "lisc" / "labels/lymp_1.png")
    assert np.unique(lymp).tolist() == [0, 1, 2] and lymp[20, 15] != lymp[24, 42]
    baso = _read(tmp_path / "lisc" / "labels/baso_1.png")  # mask 8 px smaller, padded back in place
    assert baso.shape == LISC_SHAPE
    np.testing.assert_array_equal(baso > 0, _cell_mask(LISC_SHAPE, [(24, 30, 12)]) > 0)
    mono = _read(tmp_path / "lisc" / "labels/mono_1.png")  # RGB mask
    np.testing.assert_array_equal(mono > 0, _cell_mask(LISC_SHAPE, [(24, 30, 12)]) > 0)


def test_lisc_cli_and_expert_choice(lisc_src, tmp_path, monkeypatch, capsys):
    for folder in ("neut", "lymp"):
        masks = lisc_src / "LISC Database" / "Ground Truth Segmentation" / folder
        (masks / "areaforexpert1").rename(masks / "areaforexpert2")
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "prepare_lisc.py",
            "--src",
            str(lisc_src / "LISC Database"),
            "--out",
            str(tmp_path / "lisc2"),
            "--expert",
            "2",
            "--seed",
            "3",
        ],
    )
    runpy.run_path(str(REPO / "scripts" / "prepare_lisc.py"), run_name="__main__")
    printed = capsys.readouterr().out
    content = json.loads((tmp_path / "lisc2" / "datalist.json").read_text())
    assert sorted(item["image"] for item in _items(tmp_path / "lisc2" / "datalist.json")) == [
        "images/lymp_1.png",
        "images/neut_1.png",
        "images/neut_2.png",
    ]
    assert "skipped (no ground truth): 5 images" in printed and "skipped (mixed cell types): 1 images" in printed
    assert f"training: {len(content['training'])} images" in printed
    with pytest.raises(ValueError, match="areaforexpert3"):
        prepare_lisc(lisc_src, tmp_path / "lisc3", expert=3)
    _no_output(tmp_path / "lisc3")


def test_lisc_bad_inputs(lisc_src, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a LISC release"):
        prepare_lisc(tmp_path, tmp_path / "x")
    bad_mask = lisc_src / "LISC Database" / "Ground Truth Segmentation" / "eosi" / "areaforexpert1" / "1_expert.bmp"
    Image.fromarray(np.zeros((47, 60), np.uint8)).save(bad_mask)
    with pytest.raises(ValueError, match=r"1_expert.bmp: mask is 60x47 but image 1.bmp is 60x48"):
        prepare_lisc(lisc_src, tmp_path / "x")
    _no_output(tmp_path / "x")
    (lisc_src / "LISC Database" / "Main Dataset" / "plasma").mkdir()
    with pytest.raises(ValueError, match="plasma: unknown LISC class folder"):
        prepare_lisc(lisc_src, tmp_path / "x")


# ---------------------------------------------------------------- synthetic smears and videos


def test_smear_properties_and_determinism():
    image, instances, types = make_smear((128, 128), num_cells=6, seed=4)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert instances.shape == (128, 128) and instances.dtype == np.uint16
    assert np.unique(instances).tolist() == list(range(7)) and len(types) == 6
    assert set(types) <= set(CELL_TYPES)
    assert _touching(instances)
    background = image[instances == 0].mean(0)
    assert background[0] > background[2] > background[1]  # pinkish: red > blue > green
    assert image[instances > 0].mean() < background.mean()  # stained cells darker than plasma
    again = make_smear((128, 128), num_cells=6, seed=4)
    np.testing.assert_array_equal(again[0], image)
    np.testing.assert_array_equal(again[1], instances)
    assert not np.array_equal(make_smear((128, 128), 6, seed=5)[1], instances)
    _, _, types = make_smear((96, 128), num_cells=4, seed=0, cell_type=3)
    assert types == [3, 3, 3, 3]


def _cell_features(image, instances):
    """Per cell: nucleus share of the cell, number of nucleus pieces, nucleus darkness."""
    grey = image.mean(-1)
    nucleus_px = (grey < 150) & (image[..., 2].astype(int) > image[..., 0].astype(int) + 10)
    features = []
    for v in range(1, int(instances.max()) + 1):
        cell = instances == v
        nucleus = cell & nucleus_px
        pieces = cv2.connectedComponents(nucleus.astype(np.uint8))[0] - 1
        features.append((nucleus.sum() / cell.sum(), pieces, grey[nucleus].mean() / 255 if nucleus.any() else 1))
    return features


def test_smear_cell_types_are_learnable():
    """A nearest-centroid classifier on three nucleus features tells the five types apart."""

    def dataset(seeds):
        x, y = [], []
        for seed in seeds:
            for cell_type in CELL_TYPES:
                image, instances, _ = make_smear((128, 128), 4, seed=(seed, cell_type), cell_type=cell_type)
                features = _cell_features(image, instances)
                x += features
                y += [cell_type] * len(features)
        return np.asarray(x), np.asarray(y)

    x_train, y_train = dataset(range(6))
    x_test, y_test = dataset(range(100, 103))
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    centroids = np.stack([((x_train[y_train == t] - mean) / std).mean(0) for t in CELL_TYPES])
    distances = np.linalg.norm(((x_test - mean) / std)[:, None] - centroids[None], axis=-1)
    accuracy = (np.asarray(list(CELL_TYPES))[distances.argmin(1)] == y_test).mean()
    assert accuracy >= 0.8


def _centroid(mask):
    return np.argwhere(mask).mean(0)


def test_cell_video_motion_touching_division():
    from monaiseg.data.ctc import track_table

    frames, masks, parents = make_cell_video((96, 96), num_frames=8, num_cells=4, seed=2)
    assert frames.shape == (8, 96, 96, 3) and frames.dtype == np.uint8
    assert masks.shape == (8, 96, 96) and masks.dtype == np.uint16
    table = {int(k): (int(b), int(e), int(p)) for k, b, e, p in track_table(masks, parents)}  # continuous tracks
    assert sorted(parents) == [5, 6] and set(parents.values()) == {4}
    division = table[5][0]
    assert table[4][1] == division - 1 and table[6][0] == division and 0 < division < 8
    assert table[5][2] == table[6][2] == 4 and table[4][2] == 0
    assert all(table[k][:2] == (0, 7) for k in (1, 2, 3))
    assert _touching(masks[0]) and _touching(masks[division])  # the pair 1-2, the two daughters
    steps = [np.linalg.norm(_centroid(masks[t + 1] == 3) - _centroid(masks[t] == 3)) for t in range(7)]
    assert np.mean(steps) > 0.3 and max(steps) < 6  # moves, smoothly
    again = make_cell_video((96, 96), 8, 4, seed=2)
    np.testing.assert_array_equal(again[0], frames)
    np.testing.assert_array_equal(again[1], masks)
    assert not np.array_equal(make_cell_video((96, 96), 8, 4, seed=3)[1], masks)


def test_synthetic_dataset_files_and_cli(tmp_path):
    from monaiseg.data.ctc import read_ctc_frames, read_ctc_tracks

    datalist = make_synthetic_cell_dataset(
        tmp_path / "ds", num_images=7, num_videos=3, shape=(64, 80), video_frames=5, seed=1
    )
    root = tmp_path / "ds"
    content = json.loads(datalist.read_text())
    assert [len(content[s]) for s in SPLITS] == [5, 1, 1]
    assert [len(content[f"{s}_videos"]) for s in SPLITS] == [1, 1, 1]
    assert sorted(item["cell_type"] for item in _items(datalist)) == [1, 1, 2, 2, 3, 4, 5]
    for item in _items(datalist):
        image, label = _read(root / item["image"]), _read(root / item["label"])
        assert image.shape == (64, 80, 3) and label.dtype == np.uint16 and label.max() >= 1
    videos = sorted(content[f"{s}_videos"][0]["image"] for s in SPLITS)
    assert videos == ["videos/01", "videos/02", "videos/03"]
    entry = content["training_videos"][0]
    assert entry["label"] == entry["image"] + "_GT/TRA"
    assert read_ctc_frames(root / entry["image"]).shape == (5, 64, 80, 3)
    masks, table = read_ctc_tracks((root / entry["label"]).parent)
    assert masks.shape == (5, 64, 80) and (table[:, 3] > 0).sum() == 2  # two daughters with a parent
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
    with pytest.raises(FileExistsError):
        make_synthetic_cell_dataset(root, num_images=1, num_videos=0)
    main(["--out", str(tmp_path / "cli"), "--num_images", "2", "--num_videos", "1", "--shape", "48", "48"])
    assert (tmp_path / "cli" / "videos" / "01_GT" / "TRA" / "man_track.txt").is_file()
