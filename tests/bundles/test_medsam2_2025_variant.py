"""The medsam2 bundle's 2025 variant (configs/medsam2_2025.json): a tiny training through clips."""

from __future__ import annotations

import pytest
import torch
from conftest import MEDSAM2

from monaiseg.networks import build_sam2_segmenter


@pytest.mark.slow
def test_train_2025_variant_through_the_bundle(synthetic_ct, tmp_path):
    from monai.bundle import run

    configs = [str(MEDSAM2 / "configs" / n) for n in ("train.json", "medsam2_2025.json", "tiny.json")]
    run(
        config_file=configs,
        bundle_root=str(tmp_path),
        dataset_dir=str(synthetic_ct),
        clip_length=4,
        batch_size=2,
        logging_file=str(MEDSAM2 / "configs" / "logging.conf"),
    )
    content = torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)
    build_sam2_segmenter("tiny", 256).load_state_dict(content["model"], strict=True)
