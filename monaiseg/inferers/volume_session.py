"""Corrections of a SAM2 propagation: the tracking state of a volume kept between requests.

`VolumeSession(model, volume).start(prompts)` segments the volume exactly as `propagate_volume`
(same passes, same labels) but keeps every frame's tracking output of both passes (sam2's
per-object memory: mask memory features, object pointer, low-res mask logits), so that later
interactions only re-track what they change:

- `correct(prompt)`: clicks, a box or a mask for an object the session holds, on slice k. Clicks
  are added to the slice's clicks (its box kept), a box replaces the slice's prompt (with the
  request's clicks), a mask replaces it (`ObjectPrompt.mask`: it seeds the object's memory on k).
  As in sam2's interactive API, a slice that was already tracked is corrected from its current
  mask (the previous logits as mask input, with memory); slice k becomes a prompted (conditioning)
  slice of the object, and tracking restarts from k: forward from k + 1 and backward from k - 1,
  each reading the pass's stored memory of the slices behind it. A restart stops where the object's
  new mask equals its previous one on `settle` consecutive slices, or where a slice belongs to
  another prompted slice of the object (`owns_frame`); other objects and slices out of reach keep
  their labels. Returns the slices whose result was recomputed.
- `correct(prompt, carry=False)`: only slice k is corrected; `propagate()` later re-tracks from every
  slice so corrected at once (several corrections, then one propagation; one undo step per object).
- `add(prompts)`: new objects (e.g. one that appears mid-volume), tracked from their slices as a
  correction of an object with no mask yet; the other objects keep their labels.
- `undo(obj_id)`: reverts the object's last correction (its tracking outputs, prompts and slices).
- `reset(obj_id)`: drops the object.

Labels (H, W, D) are composed per slice from the stored outputs by `propagate_volume`'s rule:
objects whose mask comes from the forward pass first (highest logit), then those from the backward
pass where the slice is still unlabelled. Memory: about (mask memory + low-res logits) per slice,
object and pass, plus the volume (`nbytes`); bound the number of sessions, not the slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from monaiseg.data.embedding_cache import tensor_leaves
from monaiseg.inferers.session import InteractiveSession, SessionError, owns_frame
from monaiseg.inferers.tracking import LazyFrames, add_prompt, frames_in_both_passes
from monaiseg.networks.sam2_private import (
    encode_memory,
    new_tracking_state,
    register_object,
    track_frame,
    video_res_logits,
)
from monaiseg.prompts import ObjectPrompt

FORWARD, BACKWARD = False, True
STORES = ("cond_frame_outputs", "non_cond_frame_outputs")


@dataclass
class _Step:
    """What one correction replaced, to undo it: the slice prompt and prompted slices before, and
    every (pass, store, slice) output and slice source it overwrote (None: was absent)."""

    obj_id: int
    frame: int
    prompt: ObjectPrompt | None
    keys: set[int]
    outputs: dict[tuple[bool, str, int], dict | None] = field(default_factory=dict)
    sources: dict[int, bool | None] = field(default_factory=dict)


def merge_prompt(old: ObjectPrompt | None, new: ObjectPrompt) -> ObjectPrompt:
    """The prompt of a slice after `new` is added: a mask or a box replaces it, clicks are appended
    (the box kept; a mask prompt is then carried by the current mask logits instead)."""
    if old is None or new.mask is not None or new.box is not None or old.mask is not None:
        return new
    points = (old.points or ()) + (new.points or ())
    labels = (old.point_labels or ()) + (new.point_labels or ())
    return replace(old, points=points or None, point_labels=labels or None)


class VolumeSession(InteractiveSession):
    """Propagation state of one (C, H, W, D) volume in [0, 1] kept for corrections (see the module
    docstring). `settle`: a restart stops after this many consecutive unchanged slices."""

    def __init__(self, model, volume: torch.Tensor, offload_to_cpu: bool = True, settle: int = 1):
        if volume.ndim != 4 or volume.shape[0] not in (1, 3):
            raise ValueError(f"propagation expects a (C, H, W, D) volume with C = 1 or 3, got {tuple(volume.shape)}")
        self.model = model
        self.volume = volume.as_tensor() if hasattr(volume, "as_tensor") else volume
        self.height, self.width, self.depth = (int(s) for s in self.volume.shape[1:])
        self.settle = max(1, int(settle))
        frames = LazyFrames(self.volume, model)
        self.states = {
            d: new_tracking_state(model, frames, self.height, self.width, offload_to_cpu) for d in (FORWARD, BACKWARD)
        }
        self.keys: dict[int, set[int]] = {}  # object -> its prompted slices
        self.prompts: dict[tuple[int, int], ObjectPrompt] = {}  # (object, slice) -> prompt
        self.sources: dict[int, dict[int, bool]] = {}  # object -> slice -> pass giving its mask
        self.history: dict[int, list[_Step]] = {}
        self.held: dict[int, list[int]] = {}  # object -> slices corrected without re-tracking (`propagate`)
        self.labels = torch.zeros((self.height, self.width, self.depth), dtype=torch.uint8)

    @property
    def objects(self) -> list[int]:
        return sorted(self.keys)

    def _outputs(self, reverse: bool, obj_id: int) -> dict:
        state = self.states[reverse]
        return state["output_dict_per_obj"][state["obj_id_to_idx"][obj_id]]

    def _output(self, reverse: bool, obj_id: int, frame: int) -> dict | None:
        outputs = self._outputs(reverse, obj_id)
        return outputs["cond_frame_outputs"].get(frame) or outputs["non_cond_frame_outputs"].get(frame)

    def _stored_output(self, reverse: bool, obj_id: int, frame: int) -> dict:
        """`_output` where the sources say one exists (KeyError naming the object and slice otherwise)."""
        out = self._output(reverse, obj_id, frame)
        if out is None:
            raise KeyError(f"object {obj_id} has no tracking output on slice {frame}")
        return out

    def _logits(self, reverse: bool, out: dict) -> torch.Tensor:
        """(H, W) mask logits of one stored output at the volume's resolution."""
        return video_res_logits(self.model, self.states[reverse], out["pred_masks"])[0, 0].float().cpu()

    @torch.inference_mode()
    def start(self, prompts: Sequence[ObjectPrompt]) -> torch.Tensor:
        """Propagate `prompts` through the volume (as `propagate_volume`); returns labels (H, W, D)."""
        if not prompts:
            raise ValueError("propagation needs at least one prompt")
        for prompt in prompts:
            prompt.validate(self.depth, self.height, self.width)
        if max(p.obj_id for p in prompts) > 255:
            raise ValueError("label values of a session must be <= 255")
        for prompt in prompts:
            self.keys.setdefault(prompt.obj_id, set()).add(prompt.frame)
            self.prompts[prompt.obj_id, prompt.frame] = prompt
            self.history.setdefault(prompt.obj_id, [])
            self.sources.setdefault(prompt.obj_id, {})
        kept: dict = {}  # image features of the frames both passes visit, encoded once
        starts = {FORWARD: min(p.frame for p in prompts), BACKWARD: max(p.frame for p in prompts)}
        for reverse in (FORWARD, BACKWARD):
            state = self.states[reverse]
            state["kept_features"], state["keep_frames"] = kept, frames_in_both_passes(prompts)
            for prompt in prompts:
                add_prompt(self.model, state, prompt)
            for frame, obj_ids, _ in self.model.propagate_in_video(
                state, start_frame_idx=starts[reverse], reverse=reverse
            ):
                for obj in obj_ids:
                    if owns_frame(sorted(self.keys[obj]), frame, reverse):
                        self.sources[obj][frame] = reverse
            state.pop("kept_features"), state.pop("keep_frames")
        self._compose(range(self.depth))
        return self.labels

    def _compose(self, frames) -> None:
        """Labels of `frames` from the stored outputs (forward-pass objects first, highest logit)."""
        for frame in frames:
            labels = torch.zeros((self.height, self.width), dtype=self.labels.dtype)
            for reverse in (FORWARD, BACKWARD):
                objs = [o for o in self.objects if self.sources[o].get(frame) is reverse]
                if not objs:
                    continue
                outs = [self._stored_output(reverse, o, frame)["pred_masks"] for o in objs]
                logits = video_res_logits(self.model, self.states[reverse], torch.cat(outs))
                best, winner = logits[:, 0].float().cpu().max(dim=0)
                ids = torch.tensor(objs, dtype=labels.dtype)[winner]
                fg = best > 0
                if reverse:
                    fg &= labels == 0
                labels[fg] = ids[fg]
            self.labels[..., frame] = labels

    def object_mask(self, obj_id: int, frame: int) -> torch.Tensor | None:
        """The object's current (H, W) mask on `frame` (None where no pass reached it)."""
        reverse = self.sources[obj_id].get(frame)
        if reverse is None:
            return None
        return self._logits(reverse, self._stored_output(reverse, obj_id, frame)) > 0

    def _set(self, step: _Step, reverse: bool, store: str, frame: int, out: dict | None) -> None:
        outputs = self._outputs(reverse, step.obj_id)[store]
        step.outputs.setdefault((reverse, store, frame), outputs.get(frame))
        if out is None:
            outputs.pop(frame, None)
        else:
            outputs[frame] = out

    def _set_source(self, step: _Step, frame: int, reverse: bool) -> None:
        step.sources.setdefault(frame, self.sources[step.obj_id].get(frame))
        self.sources[step.obj_id][frame] = reverse

    def _point_inputs(self, prompt: ObjectPrompt) -> dict:
        """sam2 point inputs of a prompt (box corners labelled 2 and 3 first), scaled to its input size."""
        coords, labels = [], []
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            coords += [(x0, y0), (x1, y1)]
            labels += [2, 3]
        coords += list(prompt.points or ())
        labels += list(prompt.point_labels or ())
        scale = torch.tensor([self.model.image_size / self.width, self.model.image_size / self.height])
        device = self.states[FORWARD]["device"]
        return {
            "point_coords": (torch.tensor(coords, dtype=torch.float32) * scale)[None].to(device),
            "point_labels": torch.tensor(labels, dtype=torch.int32)[None].to(device),
        }

    def _mask_inputs(self, mask: np.ndarray) -> torch.Tensor:
        """A mask prompt (H, W) as sam2's mask input (1, 1, S, S), as `add_new_mask` makes it."""
        size = self.model.image_size
        mask_t = torch.as_tensor(np.asarray(mask, dtype=bool))[None, None].float()
        mask_t = F.interpolate(mask_t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return (mask_t >= 0.5).float().to(self.states[FORWARD]["device"])

    @torch.inference_mode()
    def add(self, prompts: Sequence[ObjectPrompt]) -> list[int]:
        """New objects, each tracked from its prompted slices (see the module docstring); returns the
        recomputed slices. Undo: `reset` the object."""
        held = sorted({p.obj_id for p in prompts} & set(self.keys))
        if held:
            raise SessionError(f"object {held[0]} is already in this session: correct it instead", 409)
        if not prompts or max(p.obj_id for p in prompts) > 255 or min(p.obj_id for p in prompts) < 1:
            raise SessionError("new objects need prompts with label values 1..255")
        for prompt in prompts:
            try:
                prompt.validate(self.depth, self.height, self.width)
            except ValueError as exc:
                raise SessionError(str(exc)) from None
        changed: set[int] = set()
        for prompt in prompts:
            if prompt.obj_id not in self.keys:
                for state in self.states.values():
                    register_object(self.model, state, prompt.obj_id)  # sam2 adds objects after tracking started
                self.keys[prompt.obj_id], self.sources[prompt.obj_id], self.history[prompt.obj_id] = set(), {}, []
            changed.update(self.correct(prompt))
        return sorted(changed)

    @torch.inference_mode()
    def propagate(self) -> list[int]:
        """Re-track from every slice corrected with `carry=False` (see the module docstring)."""
        changed: set[int] = set()
        for obj, frames in sorted(self.held.items()):
            if obj not in self.keys or not frames:
                continue
            combined = _Step(obj, frames[-1], self.prompts.get((obj, frames[-1])), set(self.keys[obj]))
            for k in frames:
                step = _Step(obj, k, self.prompts.get((obj, k)), set(self.keys[obj]))
                for reverse in (FORWARD, BACKWARD):
                    changed.update(self._restart(step, reverse))
                for key, out in step.outputs.items():
                    combined.outputs.setdefault(key, out)
                for frame, source in step.sources.items():
                    combined.sources.setdefault(frame, source)
            self.history[obj].append(combined)
        self.held = {}
        self._compose(sorted(changed))
        return sorted(changed)

    @torch.inference_mode()
    def correct(self, prompt: ObjectPrompt, carry: bool = True) -> list[int]:
        """Add `prompt` (one object, one slice) and re-track from its slice (`carry=False`: later, by
        `propagate`); returns the recomputed slices."""
        obj, k = prompt.obj_id, prompt.frame
        if obj not in self.keys:
            raise SessionError(f"object {obj} is not in this session (it holds {self.objects})", 404)
        if not 0 <= k < self.depth:
            raise SessionError(f"slice {k} is outside the volume (0..{self.depth - 1})")
        try:
            prompt.validate(self.depth, self.height, self.width)
        except ValueError as exc:
            raise SessionError(str(exc)) from None
        step = _Step(obj, k, self.prompts.get((obj, k)), set(self.keys[obj]))
        merged = merge_prompt(step.prompt, prompt)
        owner = self.sources[obj].get(k, FORWARD)
        previous = self._output(owner, obj, k)
        mask_inputs = point_inputs = prev_logits = None
        if merged.mask is not None:
            mask_inputs = self._mask_inputs(merged.mask)
        else:
            point_inputs = self._point_inputs(merged)
            if previous is not None:
                prev_logits = torch.clamp(previous["pred_masks"].to(self.states[owner]["device"]), -32.0, 32.0)
        out = track_frame(
            self.model,
            self.states[owner],
            self._outputs(owner, obj),
            k,
            owner,
            init_cond_frame=previous is None,
            point_inputs=point_inputs,
            mask_inputs=mask_inputs,
            run_mem_encoder=False,
            prev_logits=prev_logits,
        )
        high_res = F.interpolate(
            out["pred_masks"].to(self.states[owner]["device"]),
            size=(self.model.image_size, self.model.image_size),
            mode="bilinear",
            align_corners=False,
        )
        out["maskmem_features"], out["maskmem_pos_enc"] = encode_memory(
            self.model, self.states[owner], k, high_res, out["object_score_logits"]
        )
        for reverse in (FORWARD, BACKWARD):
            self._set(step, reverse, "cond_frame_outputs", k, out)
            self._set(step, reverse, "non_cond_frame_outputs", k, None)
        self.prompts[obj, k] = merged
        self.keys[obj].add(k)
        self._set_source(step, k, FORWARD)
        changed = [k]
        if carry:
            for reverse in (FORWARD, BACKWARD):
                changed += self._restart(step, reverse)
        elif k not in self.held.setdefault(obj, []):
            self.held[obj].append(k)
        self.history[obj].append(step)
        changed = sorted(changed)
        self._compose(changed)
        return changed

    def _restart(self, step: _Step, reverse: bool) -> list[int]:
        """Re-track the object from its corrected slice in one direction (see the module docstring)."""
        obj, keys = step.obj_id, sorted(self.keys[step.obj_id])
        frames = range(step.frame - 1, -1, -1) if reverse else range(step.frame + 1, self.depth)
        changed, unchanged = [], 0
        for frame in frames:
            if not owns_frame(keys, frame, reverse) or unchanged >= self.settle:
                break
            old = self.object_mask(obj, frame)
            out = track_frame(self.model, self.states[reverse], self._outputs(reverse, obj), frame, reverse)
            self._set(step, reverse, "non_cond_frame_outputs", frame, out)
            self._set_source(step, frame, reverse)
            changed.append(frame)
            new = self._logits(reverse, out) > 0
            unchanged = unchanged + 1 if old is not None and torch.equal(old, new) else 0
        return changed

    @torch.inference_mode()
    def undo(self, obj_id: int) -> list[int]:
        """Revert the object's last correction; returns the slices whose labels were recomposed."""
        if obj_id not in self.keys:
            raise SessionError(f"object {obj_id} is not in this session (it holds {self.objects})", 404)
        if not self.history[obj_id]:
            raise SessionError(f"nothing to undo for object {obj_id}: it has no correction", 409)
        step = self.history[obj_id].pop()
        for (reverse, store, frame), out in step.outputs.items():
            outputs = self._outputs(reverse, obj_id)[store]
            if out is None:
                outputs.pop(frame, None)
            else:
                outputs[frame] = out
        for frame, source in step.sources.items():
            if source is None:
                self.sources[obj_id].pop(frame, None)
            else:
                self.sources[obj_id][frame] = source
        self.keys[obj_id] = step.keys
        if step.prompt is None:
            self.prompts.pop((obj_id, step.frame), None)
        else:
            self.prompts[obj_id, step.frame] = step.prompt
        changed = sorted(step.sources)
        self._compose(changed)
        return changed

    @torch.inference_mode()
    def reset(self, obj_id: int) -> list[int]:
        """Drop the object (its outputs, prompts and history); returns the slices recomposed."""
        if obj_id not in self.keys:
            raise SessionError(f"object {obj_id} is not in this session (it holds {self.objects})", 404)
        changed = sorted(self.sources.pop(obj_id))
        for reverse in (FORWARD, BACKWARD):
            for store in STORES:
                self._outputs(reverse, obj_id)[store].clear()
        del self.keys[obj_id], self.history[obj_id]
        self.held.pop(obj_id, None)
        self.prompts = {key: p for key, p in self.prompts.items() if key[0] != obj_id}
        self._compose(changed)
        return changed

    def nbytes(self) -> int:
        """Bytes held: the volume and every stored tracking output (shared tensors counted once)."""
        seen: dict[int, int] = {self.volume.data_ptr(): self.volume.nbytes}
        for state in self.states.values():
            for outputs in state["output_dict_per_obj"].values():
                for store in STORES:
                    for out in outputs[store].values():
                        for t in tensor_leaves([v for v in out.values() if v is not None]):
                            seen[t.data_ptr()] = t.nbytes
        return sum(seen.values()) + self.labels.nbytes
