"""Write the synthetic abdominal CT as a DICOM CT series and, with `--stow`, store it on a DICOMweb
server (STOW-RS), e.g. the Orthanc of `scripts/orthanc.sh`. Prints the SeriesInstanceUID.

    .venv/bin/python scripts/make_dicom_ct.py --out /tmp/ct [--size 128 128 32] [--seed 0]
        [--spacing 0.8 0.8 2.5] [--stow http://127.0.0.1:8042/dicom-web]
"""

from __future__ import annotations

import argparse

import numpy as np
import pydicom

from monaiseg.data.dicom_series import write_dicom_series
from monaiseg.data.synthetic_ct import make_synthetic_ct


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for the series (must not exist or be empty)")
    p.add_argument("--size", type=int, nargs=3, default=(128, 128, 32), metavar=("X", "Y", "Z"))
    p.add_argument("--spacing", type=float, nargs=3, default=(0.8, 0.8, 2.5), metavar=("SX", "SY", "SZ"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patient-name", default="MONAISEG^SYNTHETIC")
    p.add_argument("--stow", help="DICOMweb URL to store the series on")
    args = p.parse_args(argv)
    volume, _ = make_synthetic_ct(tuple(args.size), seed=args.seed)
    files = write_dicom_series(
        volume.astype(np.int16), np.diag([*args.spacing, 1.0]), args.out, patient_name=args.patient_name
    )
    uid = str(pydicom.dcmread(str(files[0]), stop_before_pixels=True).SeriesInstanceUID)
    if args.stow:
        from dicomweb_client.api import DICOMwebClient

        DICOMwebClient(args.stow).store_instances([pydicom.dcmread(str(f)) for f in files])
    print(uid)
    return uid


if __name__ == "__main__":
    main()
