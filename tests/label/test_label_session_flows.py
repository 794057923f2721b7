"""Sessions through MONAI Label's own client on the shared server (tests/label/conftest.py): several
corrections held back ("propagate": false, only their slice changes), then one "propagate" action; an
object added mid-volume ("add") leaves the other objects' labels as they were. For box carry (lite_medsam,
released weights) and SAM2 propagation (medsam2, tiny random weights) on the shared synthetic CT. And the
box-trained models (lite_medsam, medsam) take clicks, in 2D and 3D."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException
from PIL import Image

pytestmark = pytest.mark.slow

DEPTH = 6  # the shared "ct": (I, J, K) = (32, 40, 6)
FIRST = {"lite_medsam": {"roi": [6, 8, 20, 26, 2, 2]}, "medsam2": {"foreground": [[12, 16, 2]]}}
ADDED = {"lite_medsam": {"roi": [20, 24, 30, 38, 4, 4]}, "medsam2": {"foreground": [[26, 32, 4]]}}


@pytest.fixture(scope="module")
def client(shared_server, tmp_path_factory):
    return MONAILabelClient(shared_server.url, tmpdir=str(tmp_path_factory.mktemp("flows")), client_id="flows")


def labels(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


@pytest.mark.parametrize("model", ["lite_medsam", "medsam2"])
def test_several_corrections_then_one_propagation_then_an_object_added_mid_volume(client, model):
    out, result = client.infer(model, "ct", {"interaction": True, "label": 1, **FIRST[model]})
    sid, start = result["interaction"]["id"], labels(out)
    assert start.shape == (32, 40, DEPTH) and set(np.unique(start)) <= {0, 1}

    held = {"action": "correct", "interaction": sid, "label": 1, "propagate": False}
    out, result = client.infer(model, "ct", {**held, "foreground": [[10, 14, 0]]})
    assert result["interaction"]["changed_slices"] == [0]  # held back: only its slice
    first = labels(out)
    assert np.array_equal(first[..., 1:], start[..., 1:])
    out, result = client.infer(model, "ct", {**held, "background": [[24, 30, 5]]})
    assert result["interaction"]["changed_slices"] == [5]
    second = labels(out)
    assert np.array_equal(second[..., :5], first[..., :5])

    out, result = client.infer(model, "ct", {"action": "propagate", "interaction": sid})
    propagated, changed = labels(out), result["interaction"]["changed_slices"]
    assert set(changed) <= set(range(1, 5))  # from slices 0 and 5, never those slices themselves
    assert all(np.array_equal(propagated[..., k], second[..., k]) for k in range(DEPTH) if k not in changed)

    out, result = client.infer(model, "ct", {"action": "add", "interaction": sid, "label": 2, **ADDED[model]})
    added = labels(out)
    assert 4 in result["interaction"]["changed_slices"] and sorted(result["interaction"]["objects"].values()) == [1, 2]
    assert (added == 2).any() and set(np.unique(added)) <= {0, 1, 2}
    # the first object keeps its voxels wherever the new one does not cover them
    assert np.array_equal((added == 1) | ((propagated == 1) & (added == 2)), propagated == 1)

    if model == "lite_medsam":  # the refusals are the task's, the same for both (checked once: medsam2 is fast)
        out, _ = client.infer(model, "ct", {"action": "reset", "interaction": sid, "label": 2})
        assert np.array_equal(labels(out), propagated)
        return
    out, result = client.infer(model, "ct", {"action": "propagate", "interaction": sid})
    assert result["interaction"]["changed_slices"] == []  # nothing held back any more
    with pytest.raises(MONAILabelClientException) as err:
        client.infer(model, "ct", {"action": "add", "interaction": sid, "label": 2, **ADDED[model]})
    assert "Status: 409" in str(err.value.msg) and "already in this session" in str(err.value.msg)
    with pytest.raises(MONAILabelClientException) as err:
        client.infer(model, "ct", {"action": "correct", "interaction": sid, "label": 3, "foreground": [[3, 3, 3]]})
    assert "Status: 404" in str(err.value.msg) and "action 'add'" in str(err.value.msg)
    out, _ = client.infer(model, "ct", {"action": "reset", "interaction": sid, "label": 2})
    assert np.array_equal(labels(out), propagated)


@pytest.mark.parametrize(
    "model, image, prompt, shape",
    [
        ("lite_medsam", "rgb", {"foreground": [[20, 24]], "background": [[2, 2]]}, (48, 40)),
        ("medsam", "rgb", {"foreground": [[20, 24]]}, (48, 40)),
        ("medsam", "ct", {"foreground": [[16, 20, 3]]}, (32, 40, DEPTH)),
    ],
)
def test_box_trained_models_take_clicks_in_2d_and_3d(client, model, image, prompt, shape):
    out, result = client.infer(model, image, {"label": 1, **prompt})
    label = np.asarray(nib.load(out).dataobj) if out.endswith(".nii.gz") else np.asarray(Image.open(out))
    assert label.shape == shape and set(np.unique(label)) <= {0, 1}, result
