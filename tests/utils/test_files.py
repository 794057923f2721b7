"""monaiseg.utils.files.atomic_folders: output folders appear whole or not at all."""

import pytest

from monaiseg.utils.files import atomic_folders


def test_atomic_folders_renames_on_success(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    b.mkdir()  # an empty target folder is allowed
    with atomic_folders(a, b) as (ta, tb):
        assert ta.parent == tmp_path and not a.exists()
        (ta / "x.txt").write_text("1")
        (tb / "y.txt").write_text("2")
    assert (a / "x.txt").read_text() == "1" and (b / "y.txt").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_atomic_folders_leaves_nothing_on_error(tmp_path):
    a = tmp_path / "a"
    with pytest.raises(RuntimeError, match="boom"), atomic_folders(a) as (ta,):
        (ta / "x.txt").write_text("1")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_folders_refuses_non_empty_target(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="refusing to overwrite"), atomic_folders(a):
        pass
    assert (a / "keep.txt").read_text() == "user data"
    assert [p.name for p in tmp_path.iterdir()] == ["a"]
