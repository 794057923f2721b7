"""A PACS as the datastore: MONAI Label's DICOMweb datastore (QIDO / WADO / STOW, e.g. Orthanc) with
what the clinical path needs and MONAI Label 0.8.5 lacks:

- a series is checked before it is stacked (an image modality, one orientation, no missing slice:
  `monaiseg.data.dicom_series.check_series`), and refused naming its SeriesInstanceUID;
- final labels go back as DICOM SEG written by pydicom-seg in this process (MONAI Label's default
  writer downloads dcmqi's `itkimage2segimage` binary from GitHub at start-up and calls it), with
  names from the request's `label_info` or the bundle's `channel_def`; its segments are numbered
  1..N as DICOM wants (OHIF draws nothing else), each segment's description keeping the label's
  name and value ("spleen (label value 3)"), so reading it back (`read_seg`, and this datastore's
  labels) gives the original label values;
- an upload that fails keeps the label in the local cache (`pending_upload` in its info) and
  reports it; STOW-RS stores an instance whole or not at all, so no partial SEG is left;
- an unreachable DICOMweb server is an HTTP 503 naming it, and the next request after it is back
  works again.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom_seg
import requests
import SimpleITK
from fastapi import HTTPException
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.datastore.utils.dicom import dicom_web_download_series
from monailabel.interfaces.datastore import DefaultLabelTag

from monaiseg.data.dicom_series import check_series
from monaiseg.label.confined import ConfinedDatastore, discard, temporary

logger = logging.getLogger(__name__)

SegmentNames = Callable[[str | None], dict[int, str]]  # model name (or None) -> {label value: name}


def _reachable(method):
    """Turn a refused or dropped connection to the DICOMweb server into HTTP 503 naming it."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as err:
            raise HTTPException(503, detail=f"DICOMweb server {self.name()} is unreachable: {err}") from err

    return call


UID = re.compile(r"[0-9][0-9.]{0,63}")
VALUE_NOTE = re.compile(r"\(label value (\d+)\)$")


def segment_description(name: str, value: int) -> str:
    """A segment's description: the label's name and value, e.g. "spleen (label value 3)"."""
    return f"{name} (label value {value})"


def segment_template(names: dict[int, str], model: str | None) -> pydicom.Dataset:
    """pydicom-seg's SEG template: segments 1..N for the label values in ascending order, each named,
    its value in its description, with generic anatomy codes."""
    segments = [
        {
            "labelID": number,
            "SegmentLabel": name,
            "SegmentDescription": segment_description(name, value),
            "SegmentAlgorithmType": "AUTOMATIC",
            "SegmentAlgorithmName": model or "monaiseg",
            "SegmentedPropertyCategoryCodeSequence": {
                "CodeValue": "123037004",
                "CodingSchemeDesignator": "SCT",
                "CodeMeaning": "Anatomical Structure",
            },
            "SegmentedPropertyTypeCodeSequence": {
                "CodeValue": "91723000",
                "CodingSchemeDesignator": "SCT",
                "CodeMeaning": name,
            },
        }
        for number, (value, name) in enumerate(sorted(names.items()), start=1)
    ]
    return pydicom_seg.template.from_dcmqi_metainfo(
        {
            "ContentCreatorName": "monaiseg",
            "SeriesDescription": f"{model or 'monaiseg'} segmentation",
            "SeriesNumber": "300",
            "InstanceNumber": "1",
            "segmentAttributes": [segments],
            "ContentLabel": "SEGMENTATION",
            "ContentDescription": "monaiseg (MONAI Label) segmentation",
            "ClinicalTrialSeriesID": "monaiseg",
            "ClinicalTrialTimePointID": "1",
            "ClinicalTrialCoordinatingCenterName": "monaiseg",
            "BodyPartExamined": "",
        }
    )


def write_seg(
    label_file: str | Path, series_dir: str | Path, names: dict[int, str], model: str | None
) -> pydicom.Dataset:
    """The DICOM SEG of a label image (label values, on the series' grid) referencing the series in
    `series_dir`: the values present become segments 1..N in ascending order (`segment_template`).
    Label values without a name are called "label N"."""
    mask = SimpleITK.Cast(SimpleITK.ReadImage(str(label_file)), SimpleITK.sitkUInt16)
    values = [int(v) for v in np.unique(SimpleITK.GetArrayViewFromImage(mask)) if v != 0]
    if not values:
        raise HTTPException(400, detail=f"{label_file}: the label is empty; there is no segment to store")
    mask = SimpleITK.ChangeLabel(mask, changeMap={float(v): float(n) for n, v in enumerate(values, start=1)})
    sources = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in sorted(Path(series_dir).glob("*.dcm"))]
    writer = pydicom_seg.MultiClassWriter(
        template=segment_template({v: names.get(v, f"label {v}") for v in values}, model),
        inplane_cropping=False,
        skip_empty_slices=False,
        skip_missing_segment=False,
    )
    return writer.write(mask, sources)


def segment_values(seg: pydicom.Dataset) -> dict[int, int]:
    """{segment number: label value} of a SEG: the value its description keeps (`segment_description`),
    else the segment number (a SEG written elsewhere)."""
    values = {}
    for segment in seg.SegmentSequence:
        found = VALUE_NOTE.search(str(segment.get("SegmentDescription", "")))
        values[int(segment.SegmentNumber)] = int(found.group(1)) if found else int(segment.SegmentNumber)
    return values


def read_seg(seg: pydicom.Dataset) -> SimpleITK.Image:
    """A SEG as a label image on its series' grid with the original label values (`segment_values`)."""
    image = pydicom_seg.MultiClassReader().read(seg).image
    mapping = {float(n): float(v) for n, v in segment_values(seg).items() if n != v}
    return SimpleITK.ChangeLabel(image, changeMap=mapping) if mapping else image


class CheckedDICOMwebDatastore(DICOMWebDatastore):
    """`DICOMWebDatastore` with checked series, pydicom-seg SEG writing and clear errors (module
    docstring). `segment_names(model)`: the label names of a served bundle."""

    def __init__(self, client, search_filter: dict[str, Any], cache_path: str | None, segment_names: SegmentNames):
        super().__init__(client=client, search_filter=search_filter, cache_path=cache_path)
        self.segment_names = segment_names

    @_reachable
    def list_images(self) -> list[str]:
        return super().list_images()

    def status(self) -> dict[str, Any]:
        """MONAI Label's datastore summary (in `/info/`); with the server unreachable, the reason
        instead of counts, so clients can still connect."""
        try:
            return super().status()
        except HTTPException as err:
            return {"total": None, "completed": None, "label_tags": {}, "error": err.detail}

    @_reachable
    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        return super().get_labeled_images(label_tag, labels)

    @_reachable
    def series_modality(self, series_uid: str) -> str | None:
        """The modality of a series the server holds under any filter, None when it holds none."""
        found = self._client.search_for_series(search_filters={"SeriesInstanceUID": series_uid})
        return str(pydicom.Dataset.from_json(found[0]).get("Modality", "")) if found else None

    @_reachable
    def get_image_uri(self, image_id: str) -> str:
        image_dir = Path(self._datastore.image_path()) / image_id
        if not (image_dir.is_dir() and any(image_dir.iterdir())):
            download = Path(tempfile.mkdtemp(prefix=".download-", dir=image_dir.parent.parent))
            try:
                dicom_web_download_series(None, image_id, str(download), self._client, self._fetch_by_frame)
                datasets = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in sorted(download.glob("*.dcm"))]
                check_series(datasets, image_id)
                shutil.rmtree(image_dir, ignore_errors=True)
                os.rename(download, image_dir)
            except ValueError as err:
                raise HTTPException(422, detail=str(err)) from err
            finally:
                shutil.rmtree(download, ignore_errors=True)  # a refused or broken download; nothing after the rename
        uri = super().get_image_uri(image_id)
        kept = Path(self._datastore.image_path()) / f"{image_id}.nii.gz"
        if temporary(uri) and kept.is_file():  # the first read returns dicom_to_nifti's temporary copy
            discard(uri)
            return str(kept)
        return uri

    @_reachable
    def save_label(
        self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any], label_id: str = ""
    ) -> str:
        if label_tag != DefaultLabelTag.FINAL:
            return super().save_label(image_id, label_filename, label_tag, label_info)
        image_uri = self.get_image_uri(image_id)
        names = self._names(label_info)
        series_dir = Path(self._datastore.image_path()) / image_id
        on_grid = self._on_image_grid(label_filename, image_uri)
        try:
            seg = write_seg(on_grid, series_dir, names, label_info.get("model"))
        finally:
            os.unlink(on_grid)
        try:
            stored = self._client.store_instances([seg])
            failed = stored.get("FailedSOPSequence")
            if failed:
                raise RuntimeError(f"the server refused the SEG: {failed}")
        except (requests.RequestException, RuntimeError) as err:
            kept = LocalDatastore.save_label(
                self, image_id, label_filename, label_tag, {**label_info, "pending_upload": True}
            )
            raise HTTPException(
                503,
                detail=f"DICOM SEG of {image_id} not stored on {self.name()} ({err}); the label is kept locally "
                f"as {kept} (pending_upload) to save again",
            ) from err
        info = {
            **label_info,
            "SeriesInstanceUID": str(seg.SeriesInstanceUID),
            "SOPInstanceUID": str(seg.SOPInstanceUID),
            "StudyInstanceUID": str(seg.StudyInstanceUID),
            "segments": {str(v): n for v, n in names.items()},
        }
        return LocalDatastore.save_label(self, image_id, label_filename, label_tag, info)

    @_reachable
    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """A final label read from its SEG with the original label values (`read_seg`; MONAI Label's
        reader gives segment numbers), kept as labels/final/IMAGE.nii.gz like MONAI Label does."""
        if label_tag != DefaultLabelTag.FINAL or not self._convert_to_nifti:
            return super().get_label_uri(label_id, label_tag, image_id)
        for uid in (label_id, image_id):  # both name folders / files here
            if not UID.fullmatch(uid):
                raise HTTPException(400, detail=f"{uid!r} is not a DICOM UID")
        kept = Path(self._datastore.label_path(DefaultLabelTag.FINAL)) / f"{image_id}.nii.gz"
        if kept.is_file():
            return str(kept)
        label_dir = Path(self._datastore.label_path(label_tag)) / label_id
        if not label_dir.is_dir() or not any(label_dir.iterdir()):
            dicom_web_download_series(None, label_id, str(label_dir), self._client, self._fetch_by_frame)
        (seg_file,) = sorted(label_dir.glob("*.dcm")) or sorted(label_dir.iterdir())[:1]
        handle, out = tempfile.mkstemp(suffix=".nii.gz")
        os.close(handle)
        try:
            SimpleITK.WriteImage(read_seg(pydicom.dcmread(str(seg_file))), out, True)
            LocalDatastore.save_label(self, image_id, out, label_tag, self._dicom_info(label_id))
        finally:
            os.unlink(out)
        return str(kept)

    def _names(self, label_info: dict[str, Any]) -> dict[int, str]:
        given = label_info.get("label_info")
        if isinstance(given, list) and given:  # 3D Slicer / OHIF: [{"name": ..., "idx": ...}, ...]
            return {int(e.get("idx", n + 1)): str(e.get("name", f"label {n + 1}")) for n, e in enumerate(given)}
        return self.segment_names(label_info.get("model"))

    @staticmethod
    def _on_image_grid(label_filename: str, image_uri: str) -> str:
        """The label with the image's geometry (labels from `/infer` and from clients carry it; a
        label of the right size but without it, e.g. a raw array saved as NIfTI, gets the image's)."""
        label, image = SimpleITK.ReadImage(label_filename), SimpleITK.ReadImage(image_uri)
        if label.GetSize() != image.GetSize():
            raise HTTPException(
                400, detail=f"{label_filename}: label size {label.GetSize()} is not the image's {image.GetSize()}"
            )
        label.CopyInformation(image)
        handle, out = tempfile.mkstemp(suffix=".nii.gz")
        os.close(handle)
        SimpleITK.WriteImage(label, out)
        return out

    @_reachable
    def datalist(self, full_path=True):
        return super().datalist(full_path)


class ConfinedDICOMwebDatastore(ConfinedDatastore, CheckedDICOMwebDatastore):
    """The DICOMweb datastore behind the id and upload checks of `monaiseg.label.confined`."""
