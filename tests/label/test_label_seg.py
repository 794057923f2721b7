"""Our DICOM SEG without a PACS: segments numbered 1..N (as DICOM and OHIF's SEG adapter want), each
segment's description keeping its label's name and value, and `read_seg` giving the original label
values back voxel for voxel."""

from __future__ import annotations

import numpy as np
import pydicom_seg
import pytest
import SimpleITK
from fastapi import HTTPException

from monaiseg.data.dicom_series import write_dicom_series
from monaiseg.label.dicomweb import read_seg, segment_values, write_seg

AFFINE = np.diag([0.8, 0.9, 2.5, 1.0])


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A 12 x 10 x 4 CT series on disk and a label image on its grid with values 3 (spleen) and 6."""
    root = tmp_path_factory.mktemp("seg")
    write_dicom_series(np.zeros((12, 10, 4), np.int16), AFFINE, root / "ct")
    reader = SimpleITK.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(root / "ct")))
    grid = reader.Execute()
    values = np.zeros((4, 10, 12), np.uint8)  # SimpleITK arrays are (Z, Y, X)
    values[1, 2:5, 3:7] = 3
    values[2, 6:9, 1:4] = 6
    label = SimpleITK.GetImageFromArray(values)
    label.CopyInformation(grid)
    SimpleITK.WriteImage(label, str(root / "label.nii.gz"))
    return root, values


def test_segments_are_numbered_from_one_with_name_and_value_in_the_description(series):
    root, values = series
    seg = write_seg(root / "label.nii.gz", root / "ct", {3: "spleen"}, "medsam2")
    numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence]
    assert numbers == [1, 2]
    assert [str(s.SegmentLabel) for s in seg.SegmentSequence] == ["spleen", "label 6"]
    descriptions = [str(s.SegmentDescription) for s in seg.SegmentSequence]
    assert descriptions == ["spleen (label value 3)", "label 6 (label value 6)"]
    assert segment_values(seg) == {1: 3, 2: 6}
    # what any SEG reader (pydicom-seg, OHIF, Slicer) decodes: segment numbers on the label's voxels
    numbered = SimpleITK.GetArrayFromImage(pydicom_seg.MultiClassReader().read(seg).image)
    assert np.array_equal(numbered, np.select([values == 3, values == 6], [1, 2], 0))
    # read back with the descriptions: the original label values
    assert np.array_equal(SimpleITK.GetArrayFromImage(read_seg(seg)), values)


def test_a_one_label_seg_is_segment_one_and_reads_back_to_its_value(series, tmp_path):
    root, values = series
    spleen = SimpleITK.ReadImage(str(root / "label.nii.gz")) == 3
    SimpleITK.WriteImage(SimpleITK.Cast(spleen, SimpleITK.sitkUInt8) * 3, str(tmp_path / "spleen.nii.gz"))
    seg = write_seg(tmp_path / "spleen.nii.gz", root / "ct", {3: "spleen", 1: "liver"}, None)
    assert [(int(s.SegmentNumber), str(s.SegmentLabel)) for s in seg.SegmentSequence] == [(1, "spleen")]
    assert np.array_equal(SimpleITK.GetArrayFromImage(read_seg(seg)), np.where(values == 3, 3, 0))


def test_a_seg_written_elsewhere_reads_back_to_its_segment_numbers(series):
    root, _ = series
    seg = write_seg(root / "label.nii.gz", root / "ct", {}, None)
    for segment in seg.SegmentSequence:
        segment.SegmentDescription = "no value here"
    assert segment_values(seg) == {1: 1, 2: 2}


def test_an_empty_label_is_refused_naming_the_file(series, tmp_path):
    root, values = series
    empty = SimpleITK.ReadImage(str(root / "label.nii.gz")) * 0
    SimpleITK.WriteImage(empty, str(tmp_path / "empty.nii.gz"))
    with pytest.raises(HTTPException, match="empty.nii.gz: the label is empty"):
        write_seg(tmp_path / "empty.nii.gz", root / "ct", {}, None)
