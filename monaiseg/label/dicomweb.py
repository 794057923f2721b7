"""A PACS as the datastore: MONAI Label's DICOMweb datastore (QIDO / WADO / STOW, e.g. Orthanc) with
what the clinical path needs and MONAI Label 0.8.5 lacks:

- a series is checked before it is stacked (an image modality, one orientation, no missing slice:
  `monaiseg.data.dicom_series.check_series`), and refused naming its SeriesInstanceUID;
- final labels go back as DICOM SEG written by pydicom-seg in this process (MONAI Label's default
  writer downloads dcmqi's `itkimage2segimage` binary from GitHub at start-up and calls it), with
  segment numbers and names from the request's `label_info` or the bundle's `channel_def`;
- an upload that fails keeps the label in the local cache (`pending_upload` in its info) and
  reports it; STOW-RS stores an instance whole or not at all, so no partial SEG is left;
- an unreachable DICOMweb server is an HTTP 503 naming it, and the next request after it is back
  works again.
"""

from __future__ import annotations

import functools
import logging
import os
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
from monaiseg.label.confined import ConfinedDatastore

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


def segment_template(names: dict[int, str], model: str | None) -> pydicom.Dataset:
    """pydicom-seg's SEG template: one segment per label value, named, with generic anatomy codes."""
    segments = [
        {
            "labelID": value,
            "SegmentLabel": name,
            "SegmentDescription": name,
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
        for value, name in sorted(names.items())
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
    """The DICOM SEG of a label image (values 0..N, on the series' grid) referencing the series in
    `series_dir`. Label values without a name are called "label N"."""
    mask = SimpleITK.Cast(SimpleITK.ReadImage(str(label_file)), SimpleITK.sitkUInt16)
    values = [int(v) for v in np.unique(SimpleITK.GetArrayViewFromImage(mask)) if v != 0]
    if not values:
        raise HTTPException(400, detail=f"{label_file}: the label is empty; there is no segment to store")
    sources = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in sorted(Path(series_dir).glob("*.dcm"))]
    writer = pydicom_seg.MultiClassWriter(
        template=segment_template({v: names.get(v, f"label {v}") for v in values}, model),
        inplane_cropping=False,
        skip_empty_slices=False,
        skip_missing_segment=False,
    )
    return writer.write(mask, sources)


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
        return super().get_image_uri(image_id)

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
