"""write_dicom_series: a volume and its affine come back voxel for voxel through ITK (MONAI's reader)
and SimpleITK's series reader; check_series refuses gaps, mixed orientations and non-images."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK
from monai.transforms import LoadImage

from monaiseg.data.dicom_series import check_series, write_dicom_series


def volume_and_affine():
    rng = np.random.default_rng(0)
    volume = rng.integers(-1000, 1500, (12, 9, 5)).astype(np.int16)
    affine = np.array([[0.0, -0.7, 0.0, 30.0], [0.8, 0.0, 0.0, -12.0], [0.0, 0.0, 2.5, 4.0], [0, 0, 0, 1.0]])
    return volume, affine  # the first array axis along anterior, the second along left: a rotated grid


def test_series_round_trips_voxels_and_affine(tmp_path):
    volume, affine = volume_and_affine()
    files = write_dicom_series(volume, affine, tmp_path / "ct", patient_name="DOE^JANE")
    assert [f.name for f in files] == [f"slice_{k:04d}.dcm" for k in range(5)]
    first = pydicom.dcmread(str(files[0]))
    assert first.Modality == "CT" and str(first.PatientName) == "DOE^JANE"
    assert len({pydicom.dcmread(str(f)).SOPInstanceUID for f in files}) == 5
    assert len({pydicom.dcmread(str(f)).SeriesInstanceUID for f in files}) == 1
    loaded = LoadImage(image_only=True)(str(tmp_path / "ct"))
    assert np.array_equal(np.asarray(loaded), volume)
    assert np.allclose(np.asarray(loaded.affine), affine, atol=1e-5)
    reader = SimpleITK.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    image = reader.Execute()
    assert np.array_equal(SimpleITK.GetArrayFromImage(image).transpose(2, 1, 0), volume)
    assert np.allclose(image.GetSpacing(), (0.8, 0.7, 2.5))


def test_a_bad_volume_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="integer"):
        write_dicom_series(np.zeros((4, 4, 2), np.float32), np.eye(4), tmp_path / "ct")
    assert not (tmp_path / "ct").exists() and not list(tmp_path.iterdir())


def datasets(tmp_path):
    volume, affine = volume_and_affine()
    return [
        pydicom.dcmread(str(f), stop_before_pixels=True) for f in write_dicom_series(volume, affine, tmp_path / "s")
    ]


def test_check_series_orders_slices_by_position(tmp_path):
    slices = datasets(tmp_path)
    ordered = check_series(slices[::-1], "1.2.3")
    assert [int(d.InstanceNumber) for d in ordered] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s[:2] + s[3:], "not evenly spaced"),
        (lambda s: s[:2] + [s[1]] + s[2:], "not evenly spaced"),
        (lambda s: [_tilted(s[0])] + s[1:], "mixed orientations"),
        (lambda s: [_as_sr(d) for d in s], "not an image series"),
        (lambda s: [], "no instances"),
    ],
)
def test_check_series_refuses_naming_the_series(tmp_path, change, message):
    with pytest.raises(ValueError, match=message) as err:
        check_series(change(datasets(tmp_path)), "1.2.840.99")
    assert "1.2.840.99" in str(err.value)


def _tilted(ds):
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.8, 0.6]
    return ds


def _as_sr(ds):
    ds.Modality = "SR"
    del ds.ImagePositionPatient
    return ds
