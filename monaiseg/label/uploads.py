"""Image files of requests checked from their content before anything keeps or reads them.

`check_image(path, max_voxels, dims)` recognises the file by its bytes (NIfTI-1/2, gzipped or
not; PNG, JPEG, BMP, TIFF), never by its name, reads the header only, and refuses (HTTP 4xx naming
the file and the problem):
- an empty file, an unknown format, or a name claiming one format for another's content (400);
- more than `max_voxels` elements (all dims and channels) in the header: 413 with both numbers,
  before any voxel is read;
- dims or channels the bundles do not take: 2D grey / RGB images and 3D one-channel volumes (400);
- fewer data bytes than the header promises, a broken gzip stream or undecodable pixels (400):
  a NIfTI's data is streamed through in blocks of 1 MiB (no array is built).
It returns the `Checked` image: its format, the extension to store it under and its shape.
`header_only=True` stops after the voxel count (images already in the datastore).
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from fastapi import HTTPException
from PIL import Image

# 512 x 512 x 512 (a chest-abdomen CT): a 3D infer peaks at ~76 bytes per voxel (scripts/measure_label_memory.py),
# ~9.5 GiB, plus the server's ~1.2 GiB and its 1 GiB embedding cache: within 12 GiB of a 24 GiB machine
DEFAULT_MAX_VOXELS = 2**27
BLOCK = 2**20
TRAILING = 2**26  # bytes after the data read to reach the gzip trailer (more: not checked)
PICTURE_EXT = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif"}
NAMED = {".nii.gz": "NIfTI", ".nii": "NIfTI", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}
NAMED |= {".tif": "TIFF", ".tiff": "TIFF", ".nrrd": "NRRD", ".dcm": "DICOM", ".mha": "MetaImage"}
CHANNELS_2D = {"1": 1, "L": 1, "P": 1, "I": 1, "I;16": 1, "F": 1, "RGB": 3}


@dataclass(frozen=True)
class Checked:
    """A checked image: format ("NIfTI", "PNG", ...), stored extension and spatial shape
    ((I, J) or (I, J, K); a 2D picture's (width, height))."""

    kind: str
    ext: str
    shape: tuple[int, ...]


def _refuse(path: Path, problem: str, status: int = 400, label: str = "file") -> HTTPException:
    return HTTPException(status, detail=f"{label} {path.name}: {problem}")


def claimed_format(name: str) -> str | None:
    """The format a file name claims by its extension (None: no known one)."""
    lower = name.lower()
    return next((kind for ext, kind in NAMED.items() if lower.endswith(ext)), None)


def _nifti_header(stream) -> nib.Nifti1Header:
    head = stream.read(540)
    for size, cls in ((348, nib.Nifti1Header), (540, nib.Nifti2Header)):
        for order in "<>":
            if len(head) >= size and int(np.frombuffer(head[:4], dtype=f"{order}i4")[0]) == size:
                header = cls.from_fileobj(io.BytesIO(head[:size]), check=True)
                if header["magic"].item() not in (b"n+1", b"n+2"):
                    raise ValueError(f"magic {header['magic'].item()!r}: not a single-file NIfTI (.nii)")
                return header
    raise ValueError("no NIfTI header (sizeof_hdr is neither 348 nor 540)")


def _read_count(stream, limit: int) -> int:
    """Bytes read from `stream` in blocks (kept nowhere), at most `limit`."""
    total = 0
    while total < limit:
        block = stream.read(min(BLOCK, limit - total))
        if not block:
            break
        total += len(block)
    return total


def _volume_shape(shape: tuple[int, ...], path: Path, label: str) -> tuple[int, ...]:
    spatial = tuple(shape)
    while len(spatial) > 3 and spatial[-1] == 1:
        spatial = spatial[:-1]
    if len(spatial) == 3 and spatial[-1] == 1:
        spatial = spatial[:2]
    if len(spatial) not in (2, 3):
        raise _refuse(path, f"shape {shape}: the bundles take 2D images and 3D volumes of one channel", label=label)
    return spatial


def check_image(
    path: str | Path,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    dims: tuple[int, ...] = (2, 3),
    name: str | None = None,
    header_only: bool = False,
    label: str = "file",
) -> Checked:
    """The checked image at `path` (module docstring); `name`: the client's file name (its
    extension must not contradict the content); `label`: what the errors call the file."""
    path = Path(path)
    shown = Path(name or path.name)
    size = path.stat().st_size
    if size == 0:
        raise _refuse(shown, "the file is empty (0 bytes)", label=label)
    with open(path, "rb") as f:
        magic = f.read(4)
    kind: str | None = None
    shape: tuple[int, ...] = ()
    gz = magic[:2] == b"\x1f\x8b"
    try:
        if gz or size >= 348:
            opener = gzip.open if gz else open
            try:
                with opener(path, "rb") as stream:
                    header = _nifti_header(stream)
                    kind = "NIfTI"
            except (ValueError, OSError, EOFError, zlib.error) as err:
                if gz:
                    raise ValueError(f"a gzip file without a readable NIfTI header ({err})") from None
        if kind is None:
            with Image.open(path) as img:
                kind, bands = str(img.format), len(img.getbands())
                shape = (int(img.size[0]), int(img.size[1]))
                mode = img.mode
    except Image.DecompressionBombError as err:
        raise _refuse(shown, f"{err} (limit {max_voxels} voxels)", 413, label) from None
    except Image.UnidentifiedImageError:
        raise _refuse(shown, "cannot be read: not a NIfTI, PNG, JPEG, BMP or TIFF image", label=label) from None
    except (ValueError, OSError, EOFError, zlib.error) as err:
        raise _refuse(
            shown, f"cannot be read: not a NIfTI, PNG, JPEG, BMP or TIFF image ({err})", label=label
        ) from None
    claimed = claimed_format(shown.name)
    if name is not None and claimed is not None and claimed != kind:
        raise _refuse(shown, f"named as {claimed} but the content is {kind}", label=label)
    if kind == "NIfTI":
        full = tuple(int(s) for s in header.get_data_shape())
        voxels = int(np.prod(full, dtype=np.int64))
        if voxels > max_voxels:
            raise _refuse(
                shown, f"{'x'.join(map(str, full))} = {voxels} voxels, more than the limit {max_voxels}", 413, label
            )
        shape = _volume_shape(full, shown, label)
        ext = ".nii.gz" if gz else ".nii"
    else:
        voxels = shape[0] * shape[1] * bands
        if voxels > max_voxels:
            raise _refuse(
                shown, f"{shape[0]}x{shape[1]}x{bands} = {voxels} voxels, more than the limit {max_voxels}", 413, label
            )
        if mode not in CHANNELS_2D:
            raise _refuse(shown, f"mode {mode} ({bands} channels): the bundles take grey or RGB", label=label)
        ext = PICTURE_EXT.get(kind, "")
        if not ext:
            raise _refuse(shown, f"a {kind} picture: the bundles read PNG, JPEG, BMP or TIFF", label=label)
    if len(shape) not in dims:
        raise _refuse(
            shown,
            f"{len(shape)}D {shape}: the served bundles take {' or '.join(f'{d}D' for d in dims)} images",
            label=label,
        )
    if not header_only:
        _check_data(path, shown, kind, gz, header if kind == "NIfTI" else None, label)
    return Checked(kind, ext, shape)


def _check_data(path: Path, shown: Path, kind: str, gz: bool, header, label: str) -> None:
    """400 when the data is shorter than the header says or cannot be decoded."""
    try:
        if header is not None:
            offset = int(header.get_data_offset())
            needed = int(np.prod(header.get_data_shape(), dtype=np.int64)) * header.get_data_dtype().itemsize
            if gz:
                with gzip.open(path, "rb") as stream:
                    got = max(0, _read_count(stream, offset + needed) - offset)
                    _read_count(stream, TRAILING)  # to the end of a regular file: gzip checks its CRC and length
            else:
                got = max(0, path.stat().st_size - offset)
            if got < needed:
                raise _refuse(shown, f"truncated: {got} of the {needed} data bytes its header promises", label=label)
        else:
            with Image.open(path) as img:
                img.load()
    except HTTPException:
        raise
    except EOFError:
        raise _refuse(shown, f"truncated: the {kind} file ends before its compressed data does", label=label) from None
    except (ValueError, OSError, zlib.error, SyntaxError) as err:
        raise _refuse(shown, f"cannot be read: the {kind} data is damaged ({err})", label=label) from None
