"""Box-carry corrections (lite_medsam, tiny random weights) through MONAI Label's own client: a box
or clicks on slice k replace that slice's prompt and the carry reruns from k outward; undo, reset,
per-client sessions and the bad requests, the labels checked after each step."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException

from monaiseg.data.synthetic_ct import make_synthetic_ct
from monaiseg.label.server import LabelServer, tiny_copy, tiny_overrides

pytestmark = pytest.mark.slow

DEPTH = 8
LIVER = {"label": "liver", "roi": [6, 6, 26, 30, 2, 2]}
BOX = {"action": "correct", "label": "liver", "roi": [4, 4, 28, 34, 5, 5]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("box_carry")
    bundles = root / "bundles"
    tiny_copy(REPO / "bundles" / "lite_medsam", bundles / "lite_medsam", {"min_iou": None})
    image, _ = make_synthetic_ct((32, 40, DEPTH), seed=5)
    data = root / "data"
    data.mkdir()
    nib.save(nib.Nifti1Image(image.astype(np.int16), np.diag([0.8, 0.7, 2.5, 1.0])), data / "ct.nii.gz")
    with LabelServer(root / "studies", [bundles], tiny_overrides(bundles)) as srv:
        srv.upload("ct", data / "ct.nii.gz")
        srv.data, srv.tmp = data, root
        yield srv


def client(server, name: str) -> MONAILabelClient:
    return MONAILabelClient(server.url, tmpdir=str(server.tmp), client_id=name)


def volume(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def refused(call) -> str:
    with pytest.raises(MONAILabelClientException) as err:
        call()
    return str(err.value.msg)


def test_box_and_clicks_correct_the_carry_from_their_slice_then_undo_and_reset(server):
    alice = client(server, "alice")
    session_id = alice.create_session(str(server.data / "ct.nii.gz"))["session_id"]
    out, result = alice.infer("lite_medsam", "", {"objects": [LIVER]}, session_id=session_id)
    start = volume(out)
    liver = result["interaction"]["objects"]["liver"]
    assert result["interaction"]["id"] == session_id and start.shape == (32, 40, DEPTH) and (start == liver).any()

    out, result = alice.infer("lite_medsam", "", BOX, session_id=session_id)
    boxed, changed = volume(out), result["interaction"]["changed_slices"]
    assert 5 in changed and result["interaction"]["history"] == {"liver": 1}
    assert all(np.array_equal(boxed[..., k], start[..., k]) for k in range(DEPTH) if k not in changed)
    both = {"objects": [LIVER, {"label": "liver", "roi": BOX["roi"]}]}  # the same prompts in one request
    assert np.array_equal(volume(alice.infer("lite_medsam", "ct", both)[0]), boxed)

    click = {"action": "correct", "label": "liver", "foreground": [[15, 20, 6]], "background": [[2, 2, 6]]}
    out, result = alice.infer("lite_medsam", "", click, session_id=session_id)
    clicked = volume(out)
    assert 6 in result["interaction"]["changed_slices"] and result["interaction"]["history"] == {"liver": 2}
    assert all(np.array_equal(clicked[..., k], boxed[..., k]) for k in range(5))  # below 6: slice 5's carry

    out, _ = alice.infer("lite_medsam", "", {"action": "undo", "label": "liver"}, session_id=session_id)
    assert np.array_equal(volume(out), boxed)
    out, _ = alice.infer("lite_medsam", "", {"action": "undo", "label": "liver"}, session_id=session_id)
    assert np.array_equal(volume(out), start)
    out, result = alice.infer("lite_medsam", "", {"action": "reset", "label": "liver"}, session_id=session_id)
    assert result["interaction"]["objects"] == {} and not volume(out).any()


@pytest.mark.parametrize(
    "params, status, words",
    [
        ({**BOX, "roi": [4, 4, 28, 34, DEPTH, DEPTH]}, 400, "outside the image"),
        ({**BOX, "label": "spleen"}, 404, "not in session"),
        ({"action": "undo", "label": "liver"}, 409, "nothing to undo"),
        ({"action": "undo", "label": "liver", "interaction": "no-such-session"}, 410, "session expired"),
    ],
)
def test_bad_corrections_get_4xx_and_leave_the_session_unchanged(server, params, status, words):
    alice = client(server, "alice")
    if not hasattr(server, "bad_session"):
        out, result = alice.infer("lite_medsam", "ct", {"interaction": True, "objects": [LIVER]})
        server.bad_session, server.bad_before = result["interaction"]["id"], volume(out)
    message = refused(lambda: alice.infer("lite_medsam", "ct", {"interaction": server.bad_session, **params}))
    assert f"Status: {status}" in message and words in message, message
    bob = client(server, "bob")
    assert "Status: 403" in refused(lambda: bob.infer("lite_medsam", "ct", {**BOX, "interaction": server.bad_session}))
    out, result = alice.infer("lite_medsam", "ct", {**BOX, "interaction": server.bad_session})
    assert result["interaction"]["history"] == {"liver": 1}
    out, _ = alice.infer("lite_medsam", "ct", {"action": "undo", "label": "liver", "interaction": server.bad_session})
    assert np.array_equal(volume(out), server.bad_before)
