"""Replies of infer requests (monaiseg.label.replies): the label file in the format the client asks for (OHIF's
panel asks for NRRD and reads nothing else), request flags, and error messages that name files, not server paths."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK

from monaiseg.label.replies import as_requested, flag, public_message
from monaiseg.label.runtime import RequestError


def test_a_nifti_label_becomes_the_nrrd_the_client_asks_for(tmp_path):
    values = np.zeros((5, 6, 3), np.uint8)
    values[1:3, 2:5, 1] = 3
    nib.save(nib.Nifti1Image(values, np.diag([0.8, 0.9, 2.5, 1.0])), tmp_path / "label.nii.gz")
    asked = {"result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False}
    out = as_requested(str(tmp_path / "label.nii.gz"), asked)
    image = SimpleITK.ReadImage(out)
    assert out.endswith(".nrrd") and not (tmp_path / "label.nii.gz").exists()
    assert np.array_equal(SimpleITK.GetArrayFromImage(image).transpose(2, 1, 0), values)
    assert np.allclose(image.GetSpacing(), (0.8, 0.9, 2.5)) and image.GetPixelID() == SimpleITK.sitkUInt8


def test_a_label_already_in_the_asked_format_or_not_asked_is_unchanged(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), np.eye(4)), tmp_path / "label.nii.gz")
    path = str(tmp_path / "label.nii.gz")
    assert as_requested(path, {"result_extension": ".nii.gz"}) == path
    assert as_requested(path, {}) == path
    assert as_requested(str(tmp_path / "label.png"), {"result_extension": ".nrrd"}) == str(tmp_path / "label.png")


def test_request_flags_take_the_words_clients_send_and_refuse_the_rest():
    sent = {"a": True, "b": "False", "c": 0, "d": "TRUE", "e": "", "f": "maybe", "g": 2}
    assert [flag(sent, k) for k in "abcde"] == [True, False, False, True, False]
    assert flag(sent, "absent") is False and flag(sent, "absent", default=True) is True
    for key in "fg":
        with pytest.raises(RequestError, match=f"^{key} must be true or false, got"):
            flag(sent, key)


def test_error_messages_name_files_not_the_servers_paths(tmp_path):
    cached = str(tmp_path / "app" / "dicomweb-cache" / "ab12" / "1.2.3.nii.gz")
    work = str(tmp_path / "monaiseg-medsam-x")
    message = f"{cached}: shape (64, 64, 8) is not a 2D image; {work}/prompts.json: no box"
    assert (
        public_message(message, {"image": cached}, work)
        == "1.2.3.nii.gz: shape (64, 64, 8) is not a 2D image; prompts.json: no box"
    )
    assert public_message("id 7: no box", {"image": "7"}, work) == "id 7: no box"
