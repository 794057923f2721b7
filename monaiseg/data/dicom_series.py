"""DICOM image series: write a volume as a CT series (one file a slice), and check a series'
geometry before it is stacked into a volume.

A volume (X, Y, Z) with its NIfTI affine (RAS, mm) becomes slices whose pixel rows run along Y and
columns along X (`pixel_array` of slice k = volume[:, :, k].T), with ImagePositionPatient and
ImageOrientationPatient in DICOM's LPS patient frame, so ITK / SimpleITK / MONAI read the series
back to the same voxels and affine.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from monaiseg.utils.files import atomic_folders

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
IMAGE_MODALITIES = {"CT", "MR", "PT", "US", "XA", "CR", "DX", "MG", "NM", "OT", "RF", "SC"}


def write_dicom_series(
    volume: np.ndarray,
    affine: np.ndarray,
    folder: str | Path,
    patient_name: str = "MONAISEG^SYNTHETIC",
    patient_id: str = "MONAISEG-0001",
    study_uid: str | None = None,
    series_description: str = "synthetic CT",
) -> list[Path]:
    """Write `volume` (X, Y, Z) int16 HU with its RAS `affine` (4, 4) into `folder` as a CT series
    (`slice_NNNN.dcm`, new Study/Series/FrameOfReference/SOP UIDs). The folder appears whole or not
    at all. -> the files, slice order."""
    volume = np.asarray(volume)
    if volume.ndim != 3 or not np.issubdtype(volume.dtype, np.integer):
        raise ValueError(
            f"{folder}: a DICOM CT series needs an integer (X, Y, Z) volume, got {volume.dtype} {volume.shape}"
        )
    lps = RAS_TO_LPS @ np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)  # mm along X, Y, Z
    orientation = [*(lps[:3, 0] / spacing[0]), *(lps[:3, 1] / spacing[1])]
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    now = datetime.datetime.now()
    pixels = np.clip(volume, -32768, 32767).astype(np.int16)
    paths = []
    with atomic_folders(Path(folder)) as (staging,):
        for k in range(volume.shape[2]):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = FileDataset(f"slice_{k:04d}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
            ds.PatientName, ds.PatientID, ds.Modality = patient_name, patient_id, "CT"
            ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
            ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
            ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, k + 1
            ds.SeriesDescription = series_description
            ds.ImagePositionPatient = [float(v) for v in (lps @ [0.0, 0.0, k, 1.0])[:3]]
            ds.ImageOrientationPatient = [float(v) for v in orientation]
            ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # between rows (Y), between columns (X)
            ds.SliceThickness = float(spacing[2])
            ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
            ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()
            path = staging / f"slice_{k:04d}.dcm"
            ds.save_as(path, write_like_original=False)
            paths.append(Path(folder) / path.name)
    return paths


def check_series(datasets: Sequence[pydicom.Dataset], name: str) -> list[pydicom.Dataset]:
    """The slices of one image series in position order, after checking what stacking them needs:
    an image modality, one orientation, evenly spaced positions (no missing slice). Raises
    ValueError naming the series (`name`: its UID or file) and the problem."""
    if not datasets:
        raise ValueError(f"series {name}: no instances")
    modality = str(datasets[0].get("Modality", ""))
    if modality not in IMAGE_MODALITIES or "ImagePositionPatient" not in datasets[0]:
        raise ValueError(f"series {name}: a {modality or 'non-image'} object is not an image series to segment")
    orientations = {tuple(np.round(np.asarray(d.ImageOrientationPatient, float), 4)) for d in datasets}
    if len(orientations) > 1:
        raise ValueError(f"series {name}: mixed orientations {sorted(orientations)}; one orientation per series")
    row, col = np.asarray(next(iter(orientations))[:3]), np.asarray(next(iter(orientations))[3:])
    normal = np.cross(row, col)
    order = sorted(datasets, key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, float))))
    positions = np.array([np.dot(normal, np.asarray(d.ImagePositionPatient, float)) for d in order])
    if len(positions) > 2:
        steps = np.diff(positions)
        if steps.min() <= 0 or steps.max() - steps.min() > 0.01 * max(np.median(steps), 1e-6) + 1e-3:
            gap = int(np.argmax(steps))
            raise ValueError(
                f"series {name}: slice positions are not evenly spaced (step {steps[gap]:.3g} mm after slice {gap}, "
                f"median {np.median(steps):.3g} mm): a missing or repeated slice"
            )
    return order
