"""What an infer request sends and gets back beside its prompts: its true/false fields (`flag`), the
label file in the format the client asks for (`as_requested`; OHIF's panel reads only NRRD) and error
messages without the server's own paths (`public_message`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import SimpleITK

from monaiseg.label.runtime import RequestError
from monaiseg.utils.config import as_bool


def flag(request: dict, key: str, default: bool = False) -> bool:
    """A request's true/false field (a bool, 0/1, or "true"/"false" in any case); `default` when absent;
    RequestError (400) naming the field for anything else."""
    value = request.get(key)
    if value is None or value == "":
        return default
    try:
        return as_bool(value, key)
    except ValueError as exc:
        raise RequestError(str(exc)) from None


def public_message(message: str, request: dict, workdir: str) -> str:
    """An error message for the client: the server's own paths in it (the image's local file, e.g. a
    DICOMweb series' cached NIfTI, and the request's work folder) reduced to file names."""
    image = request.get("image")
    if isinstance(image, str) and os.path.isabs(image):
        message = message.replace(image, Path(image).name)
    return message.replace(workdir.rstrip(os.sep) + os.sep, "")


def as_requested(label_file: str, request: dict) -> str:
    """A NIfTI label in the format the client asks for: MONAI Label's `result_extension` (".nrrd" from
    OHIF's panel, which reads nothing else), `result_dtype` and `result_compress`; else unchanged."""
    wanted = request.get("result_extension")
    if wanted not in (".nrrd", ".nii", ".nii.gz") or not label_file.endswith((".nii", ".nii.gz")):
        return label_file
    if (".nii.gz" if label_file.endswith(".nii.gz") else Path(label_file).suffix) == wanted:
        return label_file
    compress = flag(request, "result_compress")
    image = SimpleITK.ReadImage(label_file)
    if request.get("result_dtype") == "uint8":
        image = SimpleITK.Cast(image, SimpleITK.sitkUInt8)
    fd, target = tempfile.mkstemp(suffix=wanted)
    os.close(fd)
    SimpleITK.WriteImage(image, target, compress)
    os.unlink(label_file)
    return target
