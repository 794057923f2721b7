"""Unit tests of the resumable-checkpoint pieces and the NaN-loss stop (the whole kill / resume cycle
of every bundle is in test_bundles_conformance.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose, RandFlip, RandGaussianNoise

from monaiseg.handlers import NonFiniteLossError, RandomStates, StopOnNonFiniteLoss, find_generators, latest_checkpoint
from monaiseg.utils.batch import batch_source_names


def test_random_states_restore_every_generator_and_load_weights_only(tmp_path):
    transforms = Compose([RandGaussianNoise(prob=1.0), RandFlip(prob=0.5, spatial_axis=0)])
    loader = DataLoader(Dataset([np.zeros((1, 4, 4), np.float32)] * 2, transform=transforms), batch_size=1)
    generators = find_generators(loader)
    assert len(generators) == 3  # Compose's own generator and one per random transform
    saved = tmp_path / "rng.pt"
    torch.save(RandomStates(generators).state_dict(), saved)

    def draw():
        return transforms(np.zeros((1, 4, 4), np.float32)), random.random(), np.random.rand(), torch.rand(1)

    first = draw()
    RandomStates(generators).load_state_dict(torch.load(saved, weights_only=True))
    again = draw()
    assert np.allclose(first[0], again[0]) and first[1:3] == again[1:3] and torch.equal(first[3], again[3])
    with pytest.raises(ValueError, match="different configuration"):
        RandomStates(generators[:1]).load_state_dict(torch.load(saved, weights_only=True))


def test_latest_checkpoint_picks_the_highest_epoch(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for epoch in (2, 10, 9):
        (tmp_path / f"resume_checkpoint_epoch={epoch}.pt").write_bytes(b"")
    (tmp_path / "tmp123.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path).name == "resume_checkpoint_epoch=10.pt"


def test_nan_loss_error_names_epoch_iteration_and_files():
    image = MetaTensor(torch.zeros(2, 1, 4, 4), meta={"filename_or_obj": ["/data/a.png", "/data/b.png"]})
    batch = {"image": image, "label_meta_dict": {"filename_or_obj": ["/data/a_label.png"]}}
    assert batch_source_names(batch) == ["/data/a.png", "/data/b.png", "/data/a_label.png"]
    losses = iter([1.0, float("nan")])
    engine = Engine(lambda e, b: {"loss": torch.tensor(next(losses))})
    StopOnNonFiniteLoss().attach(engine)
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 1, iteration 2 \(inputs: /data/a.png, /data/b.png"):
        engine.run([batch, batch], max_epochs=1)
