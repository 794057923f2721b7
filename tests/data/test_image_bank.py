"""ImageBank (SurgicalSAM's IBR): the latest row per class, uniform sampling."""

from __future__ import annotations

import pytest
import torch

from monaiseg.data.image_bank import ImageBank


def test_image_bank_keeps_the_latest_row_per_class_and_samples_uniformly():
    bank = ImageBank(num_classes=3, samples=4, seed=1)
    assert bank.sample() is None
    first = {"class_ids": torch.tensor([1, 2]), "x": torch.tensor([10.0, 20.0])}
    rows = bank.append_to(first)
    assert rows["class_ids"].shape == (6,) and torch.equal(rows["class_ids"][:2], first["class_ids"])
    assert set(rows["x"][2:].tolist()) <= {10.0, 20.0}
    bank.update({"class_ids": torch.tensor([1, 1]), "x": torch.tensor([11.0, 12.0])})  # the last row of class 1 wins
    assert {c: s["x"].item() for c, s in bank.slots.items()} == {1: 12.0, 2: 20.0}
    bank.samples = 3000
    drawn = bank.sample()["class_ids"]
    counts = [(drawn == c).sum().item() for c in (1, 2)]
    assert counts[0] + counts[1] == 3000 and abs(counts[0] - 1500) < 150  # uniform over the filled slots
    with pytest.raises(ValueError, match="class id 4 outside 1..3"):
        bank.update({"class_ids": torch.tensor([4]), "x": torch.tensor([0.0])})
    assert ImageBank(3, samples=0).append_to(first)["x"].shape == (2,)
