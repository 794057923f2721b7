"""Section `bundles`: every bundle's tiny config (train.json + tiny.json, synthetic data, random weights) with
`amp` off and on (bf16): one validation / inference pass on the same weights (seconds, peak memory, agreement
of the predictions) and a training iteration (seconds of the last of `--iterations`, peak memory)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from monaiseg.data.tiny_run import TinyRunData

from .common import Clock, now


def agreement(a, b) -> float | None:
    """Fraction of equal elements of two predictions (float ones within 1e-2), None when shapes differ."""
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
        return None
    return round(float(torch.isclose(a.float(), b.float(), atol=1e-2).float().mean()), 5)


def bundle_amp(bundle: Path, device: torch.device, workdir: Path, iterations: int) -> dict:
    """Tiny config of `bundle`, amp off then on (bf16) from the same weights: one validation / inference pass
    and `iterations` training iterations (the last one timed)."""
    from ignite.engine import Events
    from monai.bundle import ConfigParser
    from monai.handlers import EarlyStopHandler
    from monai.utils import set_determinism

    data = TinyRunData(workdir)(bundle)
    state, preds, out = None, {}, {}
    for amp in (False, True):
        set_determinism(0)
        parser = ConfigParser()
        parser.read_config([str(bundle / "configs" / n) for n in ("train.json", "tiny.json")])
        parser.update(
            {
                "bundle_root": str(workdir / f"root_{bundle.name}_{int(amp)}"),
                **data,
                "device": f"$torch.device('{device}')",
                "amp": amp,
                "amp_dtype": "bfloat16",
                "max_epochs": 1,
                "epoch_length": iterations,
                "val_interval": 1000,
                "num_workers": 0,
            }
        )
        network = parser.get_parsed_content("network")
        if state is None:
            state = copy.deepcopy(network.state_dict())
        network.load_state_dict(state)
        trainer = parser.get_parsed_content("train#trainer")
        row: dict = {}
        if "validate" in parser:
            evaluator = parser.get_parsed_content("validate#evaluator")
            for handler in parser.get_parsed_content("validate#handlers"):
                if isinstance(handler, EarlyStopHandler):
                    handler.set_trainer(trainer)
            collected: list = []
            evaluator.add_event_handler(
                Events.ITERATION_COMPLETED,
                lambda e, c=collected: c.extend(o["pred"].detach().cpu() for o in e.state.output),
            )
            clock = Clock(device)
            with clock:
                evaluator.run()
            row["inference_s"], row["inference_peak_mib"] = round(clock.seconds, 4), clock.peak_mib
            preds[amp] = collected
        times: list[float] = []
        trainer.add_event_handler(Events.ITERATION_STARTED, lambda e, t=times: t.append(-now(device)))
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e, t=times: t.append(t.pop() + now(device)))
        clock = Clock(device)
        with clock:
            trainer.run()
        row["train_iteration_s"], row["train_peak_mib"] = round(times[-1], 4), clock.peak_mib
        row["grad_scaler"] = bool(trainer.amp)
        out["amp_bf16" if amp else "float32"] = row
    if preds:
        pairs = list(zip(preds[False], preds[True]))
        scores = [agreement(a, b) for a, b in pairs]
        out["predictions_same_shape"] = all(s is not None for s in scores)
        out["prediction_agreement"] = min((s for s in scores if s is not None), default=None)
    f32, bf16 = out["float32"], out["amp_bf16"]
    out["train_speedup"] = round(f32["train_iteration_s"] / bf16["train_iteration_s"], 3)
    if "inference_s" in f32:
        out["inference_speedup"] = round(f32["inference_s"] / bf16["inference_s"], 3)
    return out
