"""Resumable training: the whole training state saved every few epochs, and restored on restart.

`ResumableCheckpoint` saves with ignite's `Checkpoint` + `DiskSaver(atomic=True)` (a temporary file
in the same folder, then a rename: MONAI's `CheckpointSaver` writes in place, so a kill during the
write would leave a truncated file) and restores with MONAI's `CheckpointLoader` (`weights_only=True`).
Besides the model,
optimizer and trainer (epoch / iteration), it saves every random-number state the next epoch
depends on (`RandomStates`): Python's, NumPy's and torch's global generators, and the private
generators of the random transforms and iteration objects reachable from the trainer. A run
killed after epoch k and restarted with `resume: true` therefore ends with the same weights as a
run that was never interrupted.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader
from torch.utils.data import DataLoader, Dataset

from monaiseg.utils import as_bool

logger = logging.getLogger(__name__)

PREFIX = "resume"


def latest_checkpoint(save_dir: str | Path) -> Path | None:
    """The newest `resume_checkpoint_epoch=N.pt` in `save_dir` (largest N), or None."""
    found = []
    for path in Path(save_dir).glob(f"{PREFIX}_checkpoint_epoch=*.pt"):
        match = re.fullmatch(rf"{PREFIX}_checkpoint_epoch=(\d+)\.pt", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def _numpy_state(rng: np.random.RandomState) -> dict:
    state = rng.get_state(legacy=True)
    assert isinstance(state, tuple)  # legacy=True: (name, keys, pos, has_gauss, cached)
    name, keys, pos, has_gauss, cached = state
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _set_numpy_state(rng: np.random.RandomState, state: Mapping) -> None:
    rng.set_state(
        (state["name"], state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"], state["cached"])
    )


def _is_walkable(obj: Any) -> bool:
    """Objects whose attributes may hold private generators: MONAI / monaiseg objects (transforms,
    iteration updates, inferers) that are not networks, tensors or optimizers."""
    module = type(obj).__module__ or ""
    return (
        module.startswith(("monai.", "monaiseg."))
        and not isinstance(obj, (torch.nn.Module, torch.Tensor))
        and not isinstance(obj, torch.optim.Optimizer)
    )


def _children(obj: Any) -> Iterator[Any]:
    if isinstance(obj, (list, tuple)):
        yield from obj
    elif isinstance(obj, dict):
        yield from obj.values()
    elif isinstance(obj, DataLoader):
        yield obj.dataset
    elif isinstance(obj, Engine):
        yield from (
            getattr(obj, name, None) for name in ("data_loader", "_process_function", "prepare_batch", "inferer")
        )
    elif hasattr(obj, "__self__"):  # a bound method (e.g. an engine's iteration): its object
        yield obj.__self__
    elif (isinstance(obj, Dataset) or _is_walkable(obj)) and hasattr(obj, "__dict__"):
        for name in sorted(vars(obj)):
            if name not in ("data", "_cache", "network", "state"):  # data items, caches, weights
                yield getattr(obj, name)


def find_generators(
    root: Any, max_depth: int = 8
) -> list[np.random.RandomState | np.random.Generator | torch.Generator | random.Random]:
    """Private random generators reachable from `root` (a trainer, data loader or transform), in a
    fixed traversal order: MONAI transforms' `R`, and NumPy / torch / Python generators held by
    MONAI or monaiseg objects (data loaders -> datasets -> transforms; engines -> iteration updates)."""
    found, seen = [], set()

    def visit(obj: Any, depth: int) -> None:
        if obj is None or id(obj) in seen or depth > max_depth:
            return
        seen.add(id(obj))
        if isinstance(obj, (np.random.RandomState, np.random.Generator, torch.Generator, random.Random)):
            found.append(obj)
            return
        for child in _children(obj):
            visit(child, depth + 1)

    visit(root, 0)
    return found


class RandomStates:
    """Checkpointable random states: Python, NumPy and torch globals plus the given private
    generators (`find_generators`). `state_dict()` holds only tensors and plain values, so it
    loads with `weights_only=True`."""

    def __init__(self, generators: list | None = None):
        self.generators = list(generators or [])

    def state_dict(self) -> dict:
        private = []
        for gen in self.generators:
            if isinstance(gen, np.random.RandomState):
                private.append(_numpy_state(gen))
            elif isinstance(gen, np.random.Generator):
                private.append({"bit_generator": gen.bit_generator.state})
            elif isinstance(gen, torch.Generator):
                private.append({"torch": gen.get_state()})
            else:
                private.append({"python": gen.getstate()})
        state = {
            "python": random.getstate(),
            "numpy": _numpy_state(np.random.mtrand._rand),
            "torch": torch.get_rng_state(),
            "private": private,
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Mapping) -> None:
        if len(state["private"]) != len(self.generators):
            raise ValueError(
                f"the resume checkpoint holds {len(state['private'])} private random states but this "
                f"training has {len(self.generators)}: it was written by a different configuration"
            )
        random.setstate(state["python"])
        _set_numpy_state(np.random.mtrand._rand, state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        for gen, saved in zip(self.generators, state["private"]):
            if isinstance(gen, np.random.RandomState):
                _set_numpy_state(gen, saved)
            elif isinstance(gen, np.random.Generator):
                gen.bit_generator.state = saved["bit_generator"]
            elif isinstance(gen, torch.Generator):
                gen.set_state(saved["torch"])
            else:
                gen.setstate(saved["python"])


class ResumableCheckpoint:
    """Save `{**objects, trainer, rng}` to `save_dir/resume_checkpoint_epoch=N.pt` every `interval`
    epochs (written by rank 0; the newest file is kept), and with `resume=True` restore the newest one at
    the start of training on every rank. Attach it last among the trainer's handlers so that the
    saved random states follow the epoch's validation.

    Args:
        save_dir: folder of the resume checkpoints (created).
        objects: what to save besides the trainer, e.g. `{"model": network, "optimizer": optimizer,
            "lr_scheduler": scheduler, "best_model": best_model_saver}` (anything with
            `state_dict` / `load_state_dict`; None entries, e.g. a switched-off image bank, are left out).
        interval: epochs between saves (0 disables saving).
        resume: restore the newest checkpoint in `save_dir` when training starts (none there: a
            warning, and training starts from scratch).
    """

    def __init__(self, save_dir: str | Path, objects: Mapping[str, Any], interval: int = 1, resume: bool | str = False):
        self.save_dir = Path(save_dir)
        self.objects = {name: obj for name, obj in objects.items() if obj is not None}
        self.interval, self.resume = int(interval), as_bool(resume, "resume")  # '--resume false' is False

    def attach(self, engine: Engine) -> None:
        to_save = {**self.objects, "trainer": engine, "rng": RandomStates(find_generators(engine))}
        if self.resume:
            path = latest_checkpoint(self.save_dir)
            if path is None:
                logger.warning(
                    "resume requested but %s holds no resume checkpoint: training starts from epoch 0", self.save_dir
                )
            else:
                logger.info("resuming from %s", path)
                loader = CheckpointLoader(
                    load_path=str(path),
                    load_dict=to_save,
                    map_location="cpu",  # type: ignore[arg-type]  # MONAI annotates dict | None; torch.load takes a str
                )
                loader.attach(engine)
        if self.interval <= 0:
            return
        if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.save_dir.glob("tmp*"):  # the temporary file of a write that was killed
                stale.unlink()
        # attached on every rank (ignite's distributed helpers run collectives on first use); the
        # DiskSaver writes on rank 0 only
        saver = Checkpoint(
            to_save,
            DiskSaver(str(self.save_dir), atomic=True, require_empty=False, save_on_rank=0),
            filename_prefix=PREFIX,
            n_saved=1,
            filename_pattern="{filename_prefix}_checkpoint_epoch={global_step}.{ext}",
            global_step_transform=lambda eng, _: eng.state.epoch,
        )
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), saver)
