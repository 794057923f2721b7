"""The `amp` / `amp_dtype` / `channels_last` / `compile` switches of every bundle (monaiseg.utils.precision),
on CPU: bf16 autocast trains (one bundle of each kind; the others run its forward and loss) with the
prediction shapes of float32 (random weights, tiny configs), LiteMedSAM's real weights give the float32
masks under bf16, and bad settings are refused when the config is parsed, before anything runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import BUNDLE_IDS, BUNDLES, REPO, error_chain

from monaiseg.utils.bundle_contract import PRECISION_SWITCHES as SWITCHES
from monaiseg.utils.bundle_contract import PREPARE_NETWORK, WITH_AMP


def configs(bundle: Path, *names: str) -> list[str]:
    return [str(bundle / "configs" / n) for n in (*names, "tiny.json")]


def shapes(x):
    """Shapes of the tensors in a (nested) output; dtypes other than float32 of floating tensors named."""
    if isinstance(x, torch.Tensor):
        return (tuple(x.shape), "float32" if not x.is_floating_point() or x.dtype == torch.float32 else str(x.dtype))
    if isinstance(x, (list, tuple)):
        return [shapes(v) for v in x]
    if isinstance(x, dict):
        return {k: shapes(v) for k, v in x.items()}
    return None


class FloatShadow:
    """The trainer's inferer under test: the float32 forward of the same batch (no gradients) runs first,
    then the autocast inferer the config built; both outputs' shapes are recorded."""

    def __init__(self, amp_inferer):
        self.amp_inferer, self.float32, self.amp = amp_inferer, [], []

    def __call__(self, inputs, network, *args, **kwargs):
        with torch.no_grad():
            self.float32.append(shapes(self.amp_inferer.inferer(inputs, network, *args, **kwargs)))
        output = self.amp_inferer(inputs, network, *args, **kwargs)
        self.amp.append(shapes(output))
        return output


# a full bf16 training iteration (forward, loss, backward, step) on one bundle of each kind, and on sam_med2d
# (its click-simulation iteration has no inferer); the other bundles run the same autocast forward and loss
# on one training batch without the backward and step (identical MONAI code for every bundle)
FULL_TRAINING = {
    "medsam2": "3D propagation",
    "lite_medsam": "2D prompted",
    "sam_med2d": "2D prompted, click-simulation iteration",
    "hf_sam": "automatic",
    "unet_cells": "automatic (no foundation model)",
    "sam_medcls": "classification",
}
FORWARD_ONLY = [b for b in BUNDLES if b.name not in FULL_TRAINING]


def bf16_trainer(bundle: Path, tiny_run, bundle_root: Path):
    """The tiny config's trainer with `amp: true`, bf16, on CPU (one iteration); no GradScaler for bf16."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json"))
    parser.update(
        {
            "bundle_root": str(bundle_root),
            **tiny_run(bundle),
            "device": "$torch.device('cpu')",
            "amp": True,
            "amp_dtype": "bfloat16",
            "max_epochs": 1,
            "epoch_length": 1,
            "val_interval": 1000,
        }
    )
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.amp is False
    if "iteration_update" in parser["train"]["trainer"]:
        return trainer, None
    from monaiseg.inferers import AutocastInferer

    assert isinstance(trainer.inferer, AutocastInferer) and trainer.inferer.dtype == torch.bfloat16
    return trainer, FloatShadow(trainer.inferer)


@pytest.mark.slow
@pytest.mark.parametrize("bundle", [REPO / "bundles" / b for b in FULL_TRAINING], ids=list(FULL_TRAINING))
def test_bf16_autocast_on_cpu_trains_with_the_float32_shapes(bundle, tiny_run, tmp_path):
    """One training iteration of the tiny config with `amp: true`, bf16, on CPU: the autocast forward gives
    the float32 forward's prediction shape on the same batch and weights, as float32 (outside the autocast
    region), finite, with a finite loss. sam_med2d's click-simulation iteration (no inferer) gives
    predictions shaped as its targets."""
    from ignite.engine import Events

    trainer, shadow = bf16_trainer(bundle, tiny_run, tmp_path)
    if shadow is not None:
        trainer.inferer = shadow
    outputs = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output))
    trainer.run()
    items = outputs[0] if isinstance(outputs[0], list) else [outputs[0]]
    assert all(torch.isfinite(torch.as_tensor(item["loss"])) for item in items)
    if shadow is None:
        assert [shapes(i["pred"]) for i in items] == [shapes(i["label"]) for i in items]
    else:
        assert shadow.amp == shadow.float32 and len(shadow.amp) == 1  # shapes, and float32 outside autocast


@pytest.mark.slow
@pytest.mark.parametrize("bundle", FORWARD_ONLY, ids=[b.name for b in FORWARD_ONLY])
def test_bf16_autocast_on_cpu_forward_gives_the_float32_shapes(bundle, tiny_run, tmp_path):
    """The trainer's switches resolve (bf16 autocast inferer, no GradScaler) and its autocast forward on the
    first training batch (prepared by the trainer's prepare_batch, network in training mode) gives the float32
    forward's prediction shapes as float32, with a finite loss."""
    trainer, shadow = bf16_trainer(bundle, tiny_run, tmp_path)
    batch = trainer.prepare_batch(next(iter(trainer.data_loader)), torch.device("cpu"), False)
    inputs, targets = batch[:2]
    args, kwargs = batch[2:] if len(batch) == 4 else ((), {})
    trainer.network.train()
    with torch.no_grad():
        pred = shadow(inputs, trainer.network, *args, **kwargs)
        loss = trainer.loss_function(pred, targets).mean()
    assert torch.isfinite(loss)
    assert shadow.amp == shadow.float32 and len(shadow.amp) == 1  # shapes, and float32 outside autocast


@pytest.mark.parametrize("bundle", BUNDLES, ids=BUNDLE_IDS)
def test_every_bundle_declares_the_switches_with_their_defaults(bundle):
    """train.json and inference.json: amp on where CUDA is, bf16, channels-last and compile off; every engine
    runs its inferer through with_amp and its network through prepare_network; the trainer's own amp (MONAI's
    GradScaler) only where float16 needs it."""
    import json

    for name in ("train.json", "inference.json"):
        config = json.loads((bundle / "configs" / name).read_text())
        assert {k: config.get(k) for k in SWITCHES} == SWITCHES, name
        text = (bundle / "configs" / name).read_text()
        engines = text.count('"_target_": "Supervised')
        assert engines and text.count(PREPARE_NETWORK) == engines
        own_iteration = text.count('"iteration_update": "@train#iteration"')  # sam_med2d's clicks: no inferer
        assert text.count(WITH_AMP) == engines - own_iteration
        assert '"amp": false' not in text


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"amp": True, "amp_dtype": "float32"}, r"amp_dtype must be one of .*'float32'"),
        ({"amp": False, "amp_dtype": "half-ish"}, r"amp_dtype must be one of .*'half-ish'"),
        ({"amp": "maybe"}, r"amp must be true or false, got 'maybe'"),
        ({"compile": "yes please"}, r"compile must be true or false"),
        ({"amp": True, "device": "$torch.device('meta')"}, r"device meta has no autocast"),
    ],
)
def test_bad_switches_are_refused_when_the_config_is_parsed(override, pattern, tiny_run, tmp_path):
    from monai.bundle import ConfigParser

    bundle = REPO / "bundles" / "unet_cells"
    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json"))
    parser.update({"bundle_root": str(tmp_path), **tiny_run(bundle), **override})
    with pytest.raises(Exception) as raised:
        parser.get_parsed_content("train#trainer")
    assert re.search(pattern, error_chain(raised.value)), error_chain(raised.value)[-2000:]
    assert not list(tmp_path.rglob("*.pt"))


@pytest.mark.slow
def test_lite_medsam_real_weights_bf16_masks_match_float32():
    """LiteMedSAM's official weights (eager encoder: autocast applies to torch modules), two objects on a
    synthetic slice through the bundle's box-carry inferer: bf16 masks within Dice 0.98 of float32."""
    from monai.bundle import ConfigParser

    from monaiseg.inferers import with_amp
    from monaiseg.prompts import ObjectPrompt

    bundle = REPO / "bundles" / "lite_medsam"
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / "inference.json")])
    parser.update({"bundle_root": str(bundle), "device": "$torch.device('cpu')", "runtime": "eager"})
    network, inferer = parser.get_parsed_content("network").eval(), parser.get_parsed_content("inferer")
    generator = torch.Generator().manual_seed(0)
    size = 160
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    image = 0.2 + 0.1 * torch.rand(size, size, 1, generator=generator)
    prompts = []
    for obj, (centre, radius, value) in enumerate([(50, 26, 0.8), (115, 20, 0.55)], 1):
        disk = (rows - centre) ** 2 + (cols - centre) ** 2 <= radius**2  # on the diagonal: any axis order
        image[..., 0][disk] = value + 0.05 * torch.rand(int(disk.sum()), generator=generator)
        box = (centre - radius - 3, centre - radius - 3, centre + radius + 3, centre + radius + 3)
        prompts.append(ObjectPrompt(obj_id=obj, frame=0, box=box, frame_range=(0, 0)))
    with torch.no_grad():
        fp32, bf16 = (
            with_amp(inferer, "cpu", amp)(image[None, None], network, prompts=[prompts]) for amp in (False, True)
        )
    assert fp32.shape == bf16.shape == (1, 1, size, size, 1)
    for obj, radius in ((1, 26), (2, 20)):
        a, b = fp32 == obj, bf16 == obj
        assert a.sum() > 0.8 * torch.pi * radius**2  # the float32 mask is the object, not a stray blob
        dice = 2 * (a & b).sum().item() / (a.sum() + b.sum()).item()
        assert dice >= 0.98, (obj, dice)
