"""The stores a request reaches, confined: MONAI Label's datastore (local or DICOMweb) and its
session store, behind the checks of `monaiseg.label.ids` and `monaiseg.label.uploads`.

- `ConfinedDatastore`, a mixin in front of a `Datastore` class: every image id, label id and label
  tag passed to it is a name (`check_name`, else 400 naming the field); an image or label to add
  is checked from its content (`check_image`: 400 / 413, nothing stored) and stored under the
  extension of that content, never the client's file name; a deleted image or label leaves the
  listing at once; an unknown image is a 404.
- `ConfinedSessions`: MONAI Label's `Sessions` whose session ids are names and whose one uploaded
  image file is checked before it is kept (no archives: `uncompress` is refused).
- `private_tempdir(folder)`: the server's own temporary folder (`tempfile.tempdir`), where every
  request's uploads and results are written; `temporary(path)` says whether a file is one of
  them, `discard(path)` removes it (and only such a file).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore
from monailabel.utils.sessions import Sessions

from monaiseg.label.ids import check_name
from monaiseg.label.uploads import DEFAULT_MAX_VOXELS, check_image


def private_tempdir(folder: str | Path) -> Path:
    """`folder` (created, mode 0700, emptied of a previous run's files) as this process's
    `tempfile.tempdir`."""
    folder = Path(folder).resolve()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700, parents=True)
    tempfile.tempdir = str(folder)
    return folder


def temporary(path: object) -> bool:
    """True when `path` names a file or folder directly in the process's temporary folder."""
    if not isinstance(path, str) or not os.path.isabs(path):
        return False
    real = os.path.realpath(path)
    return os.path.dirname(real) == os.path.realpath(tempfile.gettempdir()) and os.path.exists(real)


def discard(path: object) -> None:
    """Remove `path` when it is in the temporary folder (`temporary`); anything else is left alone."""
    if temporary(path):
        real = os.path.realpath(str(path))
        shutil.rmtree(real) if os.path.isdir(real) else os.unlink(real)


def staged(path: str, ext: str) -> str:
    """A new temporary file with extension `ext` holding `path`'s bytes (a hard link where possible)."""
    fd, target = tempfile.mkstemp(suffix=ext)
    os.close(fd)
    os.unlink(target)
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)
    return target


def client_name(image_id: str, filename: str) -> str:
    """The name an error shows for an uploaded file: the id with the extension the client gave."""
    return image_id + "".join(Path(filename).suffixes)


class ConfinedDatastore:
    """Mixin before a MONAI Label `Datastore` class (module docstring). `max_voxels`, `dims`: the
    limits of `check_image`, set by the app."""

    max_voxels: int = DEFAULT_MAX_VOXELS
    dims: tuple[int, ...] = (2, 3)

    def _checked(self, filename: str, image_id: str, field: str) -> str:
        checked = check_image(filename, self.max_voxels, self.dims, name=client_name(image_id, filename), label=field)
        return staged(filename, checked.ext)

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        target = None
        try:
            check_name(image_id, "image")
            target = self._checked(image_filename, image_id, "image")
            return super().add_image(image_id, target, image_info)  # type: ignore[misc]
        except BaseException:
            discard(image_filename)
            raise
        finally:
            discard(target)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any], *args):
        target = None
        try:
            check_name(image_id, "image")
            check_name(label_tag, "tag")
            if image_id not in self.list_images():  # type: ignore[attr-defined]
                raise HTTPException(404, detail=f"image {image_id!r} is not in the datastore")
            target = self._checked(label_filename, image_id, "label")
            return super().save_label(image_id, target, label_tag, label_info, *args)  # type: ignore[misc]
        except BaseException:
            discard(label_filename)
            raise
        finally:
            discard(target)

    def remove_image(self, image_id: str) -> None:
        if check_name(image_id, "id") not in self.list_images():  # type: ignore[attr-defined]
            raise HTTPException(404, detail=f"image {image_id!r} is not in the datastore")
        super().remove_image(image_id)  # type: ignore[misc]
        self._reconcile()

    def remove_label(self, label_id: str, label_tag: str) -> None:
        super().remove_label(check_name(label_id, "id"), check_name(label_tag, "tag"))  # type: ignore[misc]
        self._reconcile()

    def _reconcile(self) -> None:
        """The listing from the files now (MONAI Label leaves it to a file watcher when auto-reload is on)."""
        if isinstance(self, LocalDatastore):
            self.refresh()

    def get_image(self, image_id: str, params=None):
        return super().get_image(check_name(image_id, "image"), params)  # type: ignore[misc]

    def get_image_uri(self, image_id: str) -> str:
        return super().get_image_uri(check_name(image_id, "image"))  # type: ignore[misc]

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        return super().get_image_info(check_name(image_id, "image"))  # type: ignore[misc]

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        if check_name(image_id, "image") not in self.list_images():  # type: ignore[attr-defined]
            raise HTTPException(404, detail=f"image {image_id!r} is not in the datastore")
        return super().update_image_info(image_id, info)  # type: ignore[misc]

    def get_label(self, label_id: str, label_tag: str, params=None):
        return super().get_label(check_name(label_id, "label"), check_name(label_tag, "tag"), params)  # type: ignore[misc]

    def get_label_uri(self, label_id: str, label_tag: str, *args, **kwargs) -> str:
        for value in [*args, *kwargs.values()]:  # DICOMweb's image_id
            if value:
                check_name(value, "image")
        return super().get_label_uri(check_name(label_id, "label"), check_name(label_tag, "tag"), *args, **kwargs)  # type: ignore[misc]

    def get_label_info(self, label_id: str, label_tag: str) -> dict[str, Any]:
        return super().get_label_info(check_name(label_id, "label"), check_name(label_tag, "tag"))  # type: ignore[misc]

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        check_name(label_id, "label")
        check_name(label_tag, "tag")
        if not super().get_label_info(label_id, label_tag):  # type: ignore[misc]
            raise HTTPException(404, detail=f"no {label_tag!r} label of image {label_id!r} in the datastore")
        return super().update_label_info(label_id, label_tag, info)  # type: ignore[misc]

    def get_labels_by_image_id(self, image_id: str) -> dict[str, str]:
        return super().get_labels_by_image_id(check_name(image_id, "image"))  # type: ignore[misc]

    def get_label_by_image_id(self, image_id: str, tag: str) -> str:
        return super().get_label_by_image_id(check_name(image_id, "image"), check_name(tag, "tag"))  # type: ignore[misc]


class ConfinedLocalDatastore(ConfinedDatastore, LocalDatastore):
    """MONAI Label's folder datastore, confined (module docstring)."""


class ConfinedSessions(Sessions):
    """MONAI Label's session store: names as session ids, one checked image file per session."""

    def __init__(self, store_path: str, expiry: int, max_voxels: int, dims: tuple[int, ...]):
        super().__init__(store_path, expiry)
        self.max_voxels, self.dims = max_voxels, dims

    def get_session(self, session_id: str, update_ts: bool = True, fetch_cache: bool = True):
        return super().get_session(check_name(session_id, "session_id"), update_ts, fetch_cache)

    def remove_session(self, session_id: str):
        return super().remove_session(check_name(session_id, "session_id"))

    def add_session(self, data_file: str, expiry: int = 0, uncompress: bool = False, session_id=None):
        received = os.path.dirname(data_file) if temporary(os.path.dirname(data_file)) else data_file
        try:
            if uncompress:
                raise HTTPException(400, detail="uncompress: archives are not accepted; upload the image file")
            if os.path.isdir(data_file):
                raise HTTPException(400, detail="files: one image file per session")
            checked = check_image(data_file, self.max_voxels, self.dims, name=os.path.basename(data_file))
            kept = Path(data_file).with_name("image" + checked.ext)
            os.replace(data_file, kept)
            return super().add_session(
                str(kept), expiry, False, check_name(session_id, "session_id") if session_id else None
            )
        except BaseException:
            discard(received)
            raise
