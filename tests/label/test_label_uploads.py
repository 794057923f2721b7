"""Uploads checked before they are stored, bounded images, one clean error and no temporary file left
(issue 26, items 5, 6, 7): `check_image` on hand-made files, the confined datastore in-process, and the
package's shared server (tests/label/conftest.py) through MONAILabelClient and raw HTTP.

The `case_*` functions take a running `LabelServer` with `.data` and `.studies` (scripts/check_label_server.py
runs them too); `bad_files(folder, ct)` writes the refused files."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
from fastapi import HTTPException
from monailabel.client import MONAILabelClient
from monailabel.datastore.local import LocalDatastore
from PIL import Image

from monaiseg.label.confined import ConfinedLocalDatastore
from monaiseg.label.uploads import DEFAULT_MAX_VOXELS, check_image

from .test_label_confinement import client_status, multipart, raw


def header_only(shape: tuple[int, ...], dtype=np.int16, data: int = 4096) -> bytes:
    """A gzipped NIfTI whose header claims `shape` followed by `data` zero bytes."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_data_offset(352)
    return gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * data)


def bad_files(folder: Path, ct: Path, png: Path) -> dict[str, tuple[Path, int, str]]:
    """{case: (file, status, words of the error)} of uploads the server refuses (ct: a .nii.gz of 32x40x6 int16)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw_ct = ct.read_bytes()
    files = {
        "truncated": ("truncated.nii.gz", raw_ct[: len(raw_ct) // 2], 400, "truncated"),
        "header_1000": ("header_1000.nii.gz", header_only((32, 40, 6), data=1000), 400, "truncated: 1000 of the 15360"),
        "png_named_nifti": ("png_named.nii.gz", png.read_bytes(), 400, "named as NIfTI but the content is PNG"),
        "empty": ("empty.nii.gz", b"", 400, "empty (0 bytes)"),
        "oversized": (
            "oversized.nii.gz",
            header_only((2000, 2000, 300)),
            413,
            "1200000000 voxels, more than the limit",
        ),
        "four_channels": ("rgbd.nii.gz", header_only((8, 8, 4, 3), data=8 * 8 * 4 * 3 * 2), 400, "one channel"),
    }
    out = {}
    for case, (name, content, status, words) in files.items():
        (folder / name).write_bytes(content)
        out[case] = (folder / name, status, words)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    ct = folder / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(32 * 40 * 6, dtype=np.int16).reshape(32, 40, 6), np.eye(4)), ct)
    png = folder / "rgb.png"
    Image.fromarray(np.zeros((48, 40, 3), np.uint8)).save(png)
    return ct, png, bad_files(folder / "bad", ct, png)


def test_check_image_reads_the_content_not_the_name(files, tmp_path):
    ct, png, _ = files
    renamed = tmp_path / "payload.demo_ext"
    renamed.write_bytes(ct.read_bytes())
    checked = check_image(renamed, name="payload.demo_ext")
    assert (checked.kind, checked.ext, checked.shape) == ("NIfTI", ".nii.gz", (32, 40, 6))
    assert check_image(png, name="rgb.png").shape == (40, 48)  # (width, height) = (I, J)
    small = check_image(ct, max_voxels=32 * 40 * 6)
    assert small.shape == (32, 40, 6)


def test_check_image_refuses_each_bad_file_naming_the_problem(files):
    for case, (path, status, words) in files[2].items():
        with pytest.raises(HTTPException) as err:
            check_image(path, DEFAULT_MAX_VOXELS, name=path.name)
        assert err.value.status_code == status and words in err.value.detail, (case, err.value.detail)
        assert path.name in err.value.detail and str(path.parent) not in err.value.detail
    with pytest.raises(HTTPException) as err:
        check_image(files[0], max_voxels=32 * 40 * 6 - 1)
    assert err.value.status_code == 413 and "32x40x6 = 7680 voxels" in err.value.detail and "7679" in err.value.detail


def test_check_image_reads_no_voxel_of_an_oversized_file(files, monkeypatch):
    path = files[2]["oversized"][0]
    monkeypatch.setattr("monaiseg.label.uploads._check_data", lambda *a: pytest.fail("data read"))
    with pytest.raises(HTTPException) as err:
        check_image(path)
    assert err.value.status_code == 413


@pytest.mark.parametrize("auto_reload", [True, False])
def test_confined_datastore_stores_checked_files_and_forgets_deleted_ones_at_once(files, tmp_path, auto_reload):
    ct, png, bad = files
    store = ConfinedLocalDatastore(str(tmp_path / "studies"), auto_reload=auto_reload)
    plain = LocalDatastore(str(tmp_path / "plain"), auto_reload=auto_reload)
    try:
        for ds in (store, plain):
            upload = tmp_path / "upload.demo_ext"
            upload.write_bytes(ct.read_bytes())
            ds.add_image("case1", str(upload), {})
            ds.remove_image("case1")
        assert store.list_images() == []  # MONAI Label's own, with auto-reload, lists it until its watcher fires
        assert plain.list_images() == ([] if not auto_reload else ["case1"])
        before = sorted(p.name for p in (tmp_path / "studies").rglob("*"))
        for case, (path, status, _) in bad.items():
            with pytest.raises(HTTPException) as err:
                store.add_image(f"bad_{case}", str(path), {})
            assert err.value.status_code == status
        assert store.list_images() == [] and sorted(p.name for p in (tmp_path / "studies").rglob("*")) == before
    finally:
        for ds in (store, plain):
            if auto_reload:
                ds._observer.stop()


def temp_files(server) -> list[str]:
    """The files in the server's temporary folder (the app folder's tmp/), once its background tasks ended."""
    folder = server.studies / ".monaiseg-label-app" / "tmp"
    deadline = time.time() + 5
    while True:
        found = sorted(p.name for p in folder.iterdir())
        if not found or time.time() > deadline:
            return found
        time.sleep(0.1)


def case_uploads_checked(server, folder: Path | None = None) -> None:
    """Each bad upload (image, label, infer file, session) is one 4xx naming the problem, with one log line and
    no traceback; nothing is stored or listed; no temporary file is left, after failed and good requests.
    `folder`: where the bad files are written (default: beside the studies folder)."""
    folder = folder or server.studies.parent / "bad_uploads"
    bad = bad_files(folder, server.data / "ct.nii.gz", server.data / "rgb.png")
    client = MONAILabelClient(server.url)
    log_start = server.log.stat().st_size
    stored = sorted(p.name for p in server.studies.rglob("*") if ".monaiseg-label-app" not in p.parts)
    failures = 0
    for case, (path, status, words) in bad.items():
        code, text = client_status(lambda p=path, c=case: client.upload_image(str(p), f"bad_{c}"))
        assert code == status and words in json.loads(text)["detail"], (case, code, text)
        code, text = client_status(lambda p=path: client.save_label("ct", str(p)))
        assert code == status and words in text, (case, code, text)
        code, text = client_status(lambda p=path: client.infer("medsam2", "", {"foreground": [[1, 1, 1]]}, file=str(p)))
        assert code == status and words in text, (case, code, text)
        body, headers = multipart("files", path.name, path.read_bytes())
        code, text = raw(server.url, "PUT", "/session/", body, headers)
        assert code == status and words in text, (case, code, text)
        failures += 4
    body, headers = multipart("files", "ct.tar", (server.data / "ct.nii.gz").read_bytes())
    code, text = raw(server.url, "PUT", "/session/?uncompress=true", body, headers)
    assert code == 400 and "archives are not accepted" in text
    failures += 1
    by_hand = server.studies / "by_hand.nii.gz"  # a truncated file put in the studies folder, listed at the next change
    by_hand.write_bytes(bad["truncated"][0].read_bytes())
    ok = requests.put(
        f"{server.url}/datastore/image",
        params={"image": "fresh"},
        files={"file": ("x.png", (server.data / "rgb.png").read_bytes())},
        timeout=60,
    )
    assert ok.status_code == 200, ok.text
    label, result = client.infer("unet_cells", "", {}, file=str(server.data / "rgb.png"))
    assert Path(label).is_file()
    assert requests.delete(f"{server.url}/datastore/image", params={"id": "fresh"}, timeout=60).status_code == 200
    code, text = client_status(lambda: client.infer("medsam2", "by_hand", {"foreground": [[1, 1, 1]]}))
    assert code == 400 and "by_hand.nii.gz: truncated" in text, text
    failures += 1
    assert requests.delete(f"{server.url}/datastore/image", params={"id": "by_hand"}, timeout=60).status_code == 200
    listed = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    assert not [i for i in listed if i.startswith(("bad_", "fresh"))], listed
    after = sorted(p.name for p in server.studies.rglob("*") if ".monaiseg-label-app" not in p.parts)
    assert after == stored
    assert temp_files(server) == []
    with open(server.log, "rb") as f:
        f.seek(log_start)
        log = f.read().decode(errors="replace")
    assert "Traceback" not in log
    assert log.count("monaiseg.label.requests") == failures, log[-3000:]


@pytest.mark.slow
def test_uploads_are_checked_before_anything_is_stored(shared_server, tmp_path):
    case_uploads_checked(shared_server, tmp_path)
