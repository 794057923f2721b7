"""Batch preparation of the cell bundles' engines: clip batches (one target per cell) and optional boxes."""

from __future__ import annotations

import pytest
import torch

from monaiseg.engines import PrepareCellClipBatch, PrepareOptionalBoxes


def test_prepare_cell_clip_batch_and_optional_boxes():
    batch = {"image": torch.rand(1, 3, 8, 8, 4), "label": torch.rand(1, 2, 8, 8, 4), "box": torch.rand(1, 2, 4)}
    image, targets, args, kwargs = PrepareCellClipBatch(return_memory=True)(batch)
    assert image.shape == (1, 3, 8, 8, 4) and targets.shape == (2, 1, 8, 8, 4) and args == ()
    assert kwargs["boxes"].shape == (2, 4) and kwargs["return_memory"] is True
    assert torch.equal(targets[1, 0], batch["label"][0, 1])
    with pytest.raises(ValueError, match="batch_size 1"):
        PrepareCellClipBatch()({k: torch.cat([v, v]) for k, v in batch.items()})
    image, label, _, prompts = PrepareOptionalBoxes()({"image": torch.rand(1, 3, 4, 4), "label": ["not/loaded.png"]})
    assert label is None and prompts == {}
