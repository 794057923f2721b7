"""`monaiseg/__init__`: a lazy package (the parts load when first named) that filters only the known benign
third-party warnings, and none with MONAISEG_VERBOSE set."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from conftest import REPO

NVIMGCODEC = "NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register successfully."
TIMM = "Importing from timm.models.layers is deprecated, please import via timm.layers"


def warned(message: str, category: type[Warning], module: str) -> bool:
    with warnings.catch_warnings(record=True) as caught:  # keeps the filters monaiseg installed
        warnings.warn_explicit(message, category, "x.py", 1, module=module)
    return bool(caught)


def test_only_the_known_benign_warnings_are_filtered():
    import monaiseg

    monaiseg._filter_benign_warnings()  # as `import monaiseg` did
    assert not warned(NVIMGCODEC, UserWarning, "monai.data.image_reader")
    assert not warned(TIMM, FutureWarning, "timm.models.layers")
    assert warned(NVIMGCODEC, UserWarning, "my.module")  # the same words from elsewhere: shown
    assert warned("something else", UserWarning, "monai.data.image_reader")


@pytest.mark.slow  # subprocesses
def test_import_is_lazy_and_verbose_keeps_every_warning():
    code = (
        "import sys, warnings, monaiseg\n"
        "assert 'torch' not in sys.modules and 'monaiseg.networks' not in sys.modules\n"
        "assert monaiseg.prompts.__name__ == 'monaiseg.prompts'\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        f"    warnings.warn_explicit({NVIMGCODEC!r}, UserWarning, 'x.py', 1, module='monai.data.image_reader')\n"
        "print(len(caught))\n"
    )
    for verbose, shown in (("", "0"), ("1", "1")):
        env = {"MONAISEG_VERBOSE": verbose} if verbose else {}
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env={"PATH": "/usr/bin", **env}
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == shown
