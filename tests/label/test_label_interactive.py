"""Interactive annotation through MONAI Label's own client (`MONAILabelClient`, the calls 3D Slicer's
plugin makes): embeddings reused between clicks, sessions with corrections, undo and reset on a
propagated volume, per-client isolation, expiry and the bad requests. One real server (medsam2 at
64 and sam_med2d, tiny random weights; at most 2 sessions), stopped at the end."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
import torch
from conftest import REPO
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException
from PIL import Image

from monaiseg.data.synthetic_ct import make_synthetic_ct
from monaiseg.label.server import LabelServer, tiny_copy, tiny_overrides

pytestmark = pytest.mark.slow

DEPTH = 6
NEW = {
    "interaction": True,
    "objects": [
        {"label": "spleen", "foreground": [[10, 12, 1]]},
        {"label": "liver", "roi": [14, 8, 26, 30, 2, 2]},
    ],
}
CLICK = {"action": "correct", "label": "spleen", "background": [[11, 13, 4]]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("interactive")
    bundles = root / "bundles"
    tiny_copy(REPO / "bundles" / "medsam2", bundles / "medsam2", {"image_size": 64})
    tiny_copy(REPO / "bundles" / "sam_med2d", bundles / "sam_med2d")
    data = root / "data"
    data.mkdir()
    image, _ = make_synthetic_ct((32, 40, DEPTH), seed=3)
    nib.save(nib.Nifti1Image(image.astype(np.int16), np.diag([0.8, 0.7, 2.5, 1.0])), data / "ct.nii.gz")
    rgb = (np.random.default_rng(0).random((48, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(data / "rgb.png")
    mask = np.zeros((32, 40, DEPTH), np.uint8)
    mask[8:20, 10:24, 3] = 1
    nib.save(nib.Nifti1Image(mask, np.diag([0.8, 0.7, 2.5, 1.0])), data / "mask.nii.gz")
    nib.save(nib.Nifti1Image(mask[:, :20], np.diag([0.8, 0.7, 2.5, 1.0])), data / "bad_mask.nii.gz")
    args = {"studies": root / "studies", "bundles": [bundles], "overrides": tiny_overrides(bundles)}
    with LabelServer(**args, options=["--max-sessions", "2"]) as srv:
        srv.upload("ct", data / "ct.nii.gz")
        srv.data, srv.bundles, srv.args, srv.tmp = data, bundles, args, root
        yield srv


def client(server, name: str) -> MONAILabelClient:
    return MONAILabelClient(server.url, tmpdir=str(server.tmp), client_id=name)


def volume(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def refused(call) -> str:
    """The status line and message of a refused client call."""
    with pytest.raises(MONAILabelClientException) as err:
        call()
    return str(err.value.msg)


def test_clicks_on_one_image_reuse_its_embedding_with_the_same_label(server):
    alice = client(server, "alice")
    alice.upload_image(str(server.data / "rgb.png"), "rgb")
    start = alice.info()["embedding_cache"]
    first, result = alice.infer("sam_med2d", "rgb", {"foreground": [[12, 20]]})
    second, _ = alice.infer("sam_med2d", "rgb", {"foreground": [[14, 22]], "background": [[30, 40]]})
    again, again_result = alice.infer("sam_med2d", "rgb", {"foreground": [[12, 20]]})
    cache = alice.info()["embedding_cache"]
    assert (cache["misses"] - start["misses"], cache["hits"] - start["hits"]) == (1, 2)
    # two entries: the image's embedding and the image as the bundle's image-only transforms left it
    assert 0 < cache["bytes"] <= cache["max_bytes"] and cache["entries"] == 2
    # the request's own prompt encoder + mask decoder seconds, within its total
    for r in (result, again_result):
        assert 0 < r["latencies"]["decoder"] < r["latencies"]["total"]
    assert Path(first).read_bytes() == Path(again).read_bytes()  # a reused embedding, the same label


def test_2d_refine_from_an_uploaded_mask(server):
    alice = client(server, "alice")
    mask = np.zeros((48, 40), np.uint8)  # rows x columns of rgb.png
    mask[10:30, 8:30] = 1
    Image.fromarray(mask).save(server.data / "rgb_mask.png")
    Image.fromarray(mask[:20]).save(server.data / "rgb_bad_mask.png")
    click = {"object": "object", "foreground": [[12, 20]]}
    plain, _ = alice.infer("sam_med2d", "rgb", click)
    refined, result = alice.infer("sam_med2d", "rgb", click, label_in=str(server.data / "rgb_mask.png"))
    a, b = np.asarray(Image.open(plain)), np.asarray(Image.open(refined))
    assert a.shape == b.shape == (48, 40) and not np.array_equal(a, b) and result["labels"] == {"object": 1}
    message = refused(lambda: alice.infer("sam_med2d", "rgb", click, label_in=str(server.data / "rgb_bad_mask.png")))
    assert "Status: 400" in message and "differs from the image" in message


def test_retrained_weights_invalidate_the_embeddings(server):
    alice = client(server, "alice")
    _, before = alice.infer("sam_med2d", "rgb", {"foreground": [[12, 20]]})
    weights = server.bundles / "sam_med2d" / "models" / "model.pt"
    state = torch.load(weights, weights_only=True)
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, weights.with_suffix(".tmp"))
    weights.with_suffix(".tmp").replace(weights)
    misses = alice.info()["embedding_cache"]["misses"]
    _, after = alice.infer("sam_med2d", "rgb", {"foreground": [[12, 20]]})
    cache = alice.info()["embedding_cache"]
    assert after["weights_version"] == weights.stat().st_mtime_ns != before["weights_version"]
    # the old version's embedding is freed; the prepared image (the same for any weights) stays
    assert cache["misses"] == misses + 1 and cache["entries"] == 2


def test_session_click_correct_undo_reset_through_the_client(server):
    alice = client(server, "alice")
    session_id = alice.create_session(str(server.data / "ct.nii.gz"))["session_id"]
    out, result = alice.infer("medsam2", "", NEW, session_id=session_id)
    assert result["interaction"]["id"] == session_id and result["interaction"]["objects"] == {"liver": 1, "spleen": 3}
    start = volume(out)
    assert start.shape == (32, 40, DEPTH) and set(np.unique(start)) <= {0, 1, 3}

    out, result = alice.infer("medsam2", "", CLICK, session_id=session_id)
    corrected, changed = volume(out), result["interaction"]["changed_slices"]
    assert 4 in changed and result["interaction"]["history"] == {"liver": 0, "spleen": 1}
    assert all(np.array_equal(corrected[..., k], start[..., k]) for k in range(DEPTH) if k not in changed)

    out, result = alice.infer("medsam2", "", {"action": "undo", "label": "spleen"}, session_id=session_id)
    assert np.array_equal(volume(out), start) and result["interaction"]["history"]["spleen"] == 0
    out, _ = alice.infer("medsam2", "", CLICK, session_id=session_id)
    assert np.array_equal(volume(out), corrected)  # the same correction again: the same labels

    out, result = alice.infer(
        "medsam2",
        "",
        {"action": "correct", "object": "liver", "slice": 3},
        label_in=str(server.data / "mask.nii.gz"),
        session_id=session_id,
    )
    assert 3 in result["interaction"]["changed_slices"] and result["interaction"]["history"]["liver"] == 1

    out, result = alice.infer("medsam2", "", {"action": "reset", "label": "liver"}, session_id=session_id)
    assert result["interaction"]["objects"] == {"spleen": 3} and 1 not in np.unique(volume(out))


def test_interaction_id_on_a_datastore_image_and_save_label(server):
    alice = client(server, "alice")
    alice.upload_image(str(server.data / "ct.nii.gz"), "ct")
    _, result = alice.infer("medsam2", "ct", NEW)
    interaction = result["interaction"]["id"]
    out, result = alice.infer("medsam2", "ct", {**CLICK, "interaction": interaction})
    assert result["interaction"]["id"] == interaction and result["interaction"]["history"]["spleen"] == 1
    alice.save_label("ct", out, tag="final")
    saved = server.args["studies"] / "labels" / "final" / "ct.nii.gz"
    assert np.array_equal(volume(str(saved)), volume(out))


def test_two_clients_are_isolated(server):
    alice, bob = client(server, "alice"), client(server, "bob")
    session_id = alice.create_session(str(server.data / "ct.nii.gz"))["session_id"]
    out, _ = alice.infer("medsam2", "", NEW, session_id=session_id)
    assert "Status: 403" in refused(lambda: bob.infer("medsam2", "", CLICK, session_id=session_id))
    assert "Status: 403" in refused(lambda: bob.infer("medsam2", "", NEW, session_id=session_id))
    mine, result = alice.infer("medsam2", "", CLICK, session_id=session_id)  # alice's session is untouched
    assert result["interaction"]["history"]["spleen"] == 1
    _, result = bob.infer("medsam2", "ct", NEW)  # bob's own session
    assert result["interaction"]["id"] != session_id


@pytest.mark.parametrize(
    "params, mask, status, words",
    [
        ({**CLICK, "background": [[11, 13, DEPTH]]}, None, 400, "outside the image"),
        ({**CLICK, "label": "aorta"}, None, 404, "not in session"),
        ({"action": "undo", "label": "liver"}, None, 409, "nothing to undo"),
        ({"action": "rewind", "label": "liver"}, None, 400, "unknown action"),
        ({"action": "correct", "object": "liver", "slice": 3}, "bad_mask.nii.gz", 400, "differs from the image"),
        ({"action": "undo", "label": "liver", "interaction": "no-such-session"}, None, 410, "session expired"),
    ],
)
def test_bad_interactions_get_4xx_and_leave_the_session_unchanged(server, params, mask, status, words):
    alice = client(server, "alice")
    if not hasattr(server, "bad_session"):
        _, result = alice.infer("medsam2", "ct", NEW)
        server.bad_session = result["interaction"]["id"]
        server.bad_before = volume(alice.infer("medsam2", "ct", {**CLICK, "interaction": server.bad_session})[0])
    label_in = str(server.data / mask) if mask else None
    message = refused(lambda: alice.infer("medsam2", "ct", {"interaction": server.bad_session, **params}, label_in))
    assert f"Status: {status}" in message and words in message, message
    assert requests.get(f"{server.url}/info/", timeout=10).status_code == 200
    out, result = alice.infer("medsam2", "ct", {"action": "undo", "label": "spleen", "interaction": server.bad_session})
    redone, _ = alice.infer("medsam2", "ct", {**CLICK, "interaction": server.bad_session})
    assert np.array_equal(volume(redone), server.bad_before) and result["interaction"]["history"]["spleen"] == 0


def test_expired_evicted_and_restarted_sessions_get_410(server):
    alice = client(server, "alice")
    session_id = alice.create_session(str(server.data / "ct.nii.gz"))["session_id"]
    alice.infer("medsam2", "", NEW, session_id=session_id)
    alice.remove_session(session_id)  # MONAI Label's session is gone: no image to work on
    message = refused(lambda: alice.infer("medsam2", "", CLICK, session_id=session_id))
    assert "Status: 410" in message and "session expired: send the full prompts" in message

    kept = [alice.infer("medsam2", "ct", NEW)[1]["interaction"]["id"] for _ in range(3)]  # bound: 2 sessions
    message = refused(lambda: alice.infer("medsam2", "ct", {**CLICK, "interaction": kept[0]}))
    assert "Status: 410" in message and "session expired" in message
    alice.infer("medsam2", "ct", {**CLICK, "interaction": kept[-1]})

    session_id = alice.create_session(str(server.data / "ct.nii.gz"))["session_id"]
    before, _ = alice.infer("medsam2", "", NEW, session_id=session_id)
    before = volume(before)
    server.stop()
    with LabelServer(**server.args, port=server.port) as restarted:  # MONAI Label's session survives on disk
        assert restarted.url == server.url
        message = refused(lambda: alice.infer("medsam2", "", CLICK, session_id=session_id))
        assert "Status: 410" in message and "session expired: send the full prompts" in message
        out, result = alice.infer("medsam2", "", NEW, session_id=session_id)  # the full prompts work again
        assert result["interaction"]["id"] == session_id and np.array_equal(volume(out), before)
