"""Box carry kept for corrections (`BoxCarry`, the session of `monaiseg.inferers.box_carry`; its settings:
`box_carry_settings`, each slice's prompt and decoding: `carry_decode`).

`correct(prompt)` replaces slice k's prompt of one object (a box; clicks alone are added to the box and
the clicks that slice was segmented with, its previous low-res logits as SAM's mask prompt:
`monaiseg.inferers.click_seed`) and reruns the carry from k outward only, keeping other objects and
slices out of its reach. Box carry is deterministic, so once the box carried into a slice equals the box
the slice was segmented with before (same direction), every slice beyond is unchanged: the carry stops
there (following the stored results to where they end, and resuming if the carry now reaches further).
It also stops where the new mask agrees with the old one (IoU >= `agree_iou`): that slice and the ones
beyond keep their results. A new object may be given by clicks alone (`click_seed.seed`).
`undo(obj_id)` reverts the object's last correction exactly (`CarryStep`), `reset(obj_id)` drops the
object. Per object and slice the session stores a `CarryRecord`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import MetaTensor

from monaiseg.inferers.box_carry_settings import BoxCarrySettings
from monaiseg.inferers.carry_decode import correction_prompt, decode_slice
from monaiseg.inferers.carry_records import CarryRecord, CarryStep, Chain, compose_slice, mask_iou
from monaiseg.inferers.session import InteractiveSession, SessionError, owns_frame
from monaiseg.inferers.slice_features import SliceFeatures, encodes_slices
from monaiseg.inferers.slice_views import (
    Box,
    Letterboxed,
    SlicePrompt,
    WholeSlice,
    check_box_prompts,
    prompt_box,
)
from monaiseg.prompts import ObjectPrompt


class BoxCarry(InteractiveSession):
    """Box carry through one volume (C, H, W, D) (`monaiseg.inferers.box_carry`), kept for corrections
    (the module docstring).

    `start(prompts)` -> labels (H, W, D) float32 (each object its `obj_id`, 0 elsewhere);
    `correct(prompt)`, `undo(obj_id)`, `reset(obj_id)` -> the slices whose result changed (the new
    labels in `labels`). `settings`: `BoxCarrySettings` (None: the defaults).
    """

    def __init__(self, network, volume: torch.Tensor, settings: BoxCarrySettings | None = None):
        settings = settings if settings is not None else BoxCarrySettings()
        if volume.ndim != 4:
            raise ValueError(f"box carry needs a volume (C, H, W, D), got shape {tuple(volume.shape)}")
        self.volume = volume.as_tensor() if isinstance(volume, MetaTensor) else volume
        self.shape = tuple(int(s) for s in self.volume.shape[-3:])  # (H, W, D) as given
        self.transpose, self.overlap, self.min_iou = settings.transpose, settings.overlap, settings.min_iou
        self.settings = settings
        view = self.volume.transpose(-3, -2) if self.transpose else self.volume  # the network's: rows along W
        self.height, self.width, self.depth = (int(s) for s in view.shape[-3:])
        self.slices = (
            WholeSlice(network, self.height, self.width, settings.box_margin, settings.min_area)
            if settings.letterbox is None
            else Letterboxed(network, self.height, self.width, settings.letterbox, settings.min_area)
        )
        encodes = encodes_slices(network)
        self.features = SliceFeatures(network, view, self.slices, settings.encode_batch) if encodes else None
        self.view = view
        self.prompts: dict[int, dict[int, SlicePrompt]] = {}  # object -> prompted slice -> prompt
        self.ranges: dict[int, tuple[int, int] | None] = {}
        self.range_box: dict[int, Box | None] = {}  # a 3D box's key-slice box: the restart after an empty slice
        self.records: dict[int, dict[int, CarryRecord]] = {}
        self.history: dict[int, list[CarryStep]] = {}
        self.held: dict[int, list[int]] = {}  # object -> slices corrected without a carry (`propagate`)
        self.labels = torch.zeros(self.shape, dtype=torch.float32)

    @property
    def objects(self) -> list[int]:
        return sorted(self.prompts)

    # ------------------------------------------------------------------ interactions

    @torch.no_grad()
    def start(self, prompts: Sequence[ObjectPrompt]) -> torch.Tensor:
        """Carry every prompt's box (or the box its clicks seed) through the volume; returns the labels (H, W, D)."""
        check_box_prompts(prompts, self.shape[2], self.shape[0], self.shape[1])
        for p in prompts:
            box = self.slices.key_box(prompt_box(p, self.transpose)) if p.box is not None else None
            points, labels = self._clicks(p)
            self.prompts.setdefault(p.obj_id, {})[p.frame] = SlicePrompt(box, points, labels)
            self.ranges[p.obj_id] = p.frame_range
            self.range_box[p.obj_id] = box
            self.records.setdefault(p.obj_id, {})
            self.history.setdefault(p.obj_id, [])
        self._run([(obj, k) for obj in self.prompts for k in self.prompts[obj]], None)
        self._compose(range(self.depth))
        return self.labels

    @torch.no_grad()
    def add(self, prompts: Sequence[ObjectPrompt]) -> list[int]:
        """New objects in the carried volume (e.g. one that appears mid-volume): carried as by `start`,
        the other objects kept; returns the slices whose labels changed. Undo: `reset` the object."""
        try:
            check_box_prompts(prompts, self.shape[2], self.shape[0], self.shape[1])
        except ValueError as exc:
            raise SessionError(str(exc)) from None
        held = sorted({p.obj_id for p in prompts} & set(self.prompts))
        if held:
            raise SessionError(f"object {held[0]} is already in this session: correct it instead", 409)
        for p in prompts:
            box = self.slices.key_box(prompt_box(p, self.transpose)) if p.box is not None else None
            points, labels = self._clicks(p)
            self.prompts.setdefault(p.obj_id, {})[p.frame] = SlicePrompt(box, points, labels)
            self.ranges[p.obj_id], self.range_box[p.obj_id] = p.frame_range, box
            self.records.setdefault(p.obj_id, {})
            self.history.setdefault(p.obj_id, [])
        changed = self._run([(p.obj_id, p.frame) for p in prompts], None)
        self._compose(changed)
        return sorted(changed)

    @torch.no_grad()
    def correct(self, prompt: ObjectPrompt, carry: bool = True) -> list[int]:
        """A box and / or clicks on slice k replace that slice's prompt of the object (clicks alone
        are added to the box the slice was segmented with); the carry reruns from k outward, or, with
        `carry=False`, only slice k is segmented and `propagate()` carries later (several corrections,
        then one carry)."""
        obj, k = prompt.obj_id, prompt.frame
        if obj not in self.prompts:
            raise SessionError(f"object {obj} is not in this session (it holds {self.objects})", 404)
        if not 0 <= k < self.depth:
            raise SessionError(f"slice {k} is outside the volume (0..{self.depth - 1})")
        if prompt.mask is not None:
            raise SessionError("box carry is corrected by a box or clicks, not a mask")
        span = self.ranges[obj]
        if span is not None and not span[0] <= k <= span[1]:
            raise SessionError(f"slice {k} is outside object {obj}'s slice range {span}")
        try:
            prompt.validate(self.shape[2], self.shape[0], self.shape[1])
        except ValueError as exc:
            raise SessionError(str(exc)) from None
        old = self.prompts[obj].get(k)
        step = CarryStep(obj, k, old)
        self.prompts[obj][k] = self._merge(obj, k, prompt)
        changed = self._run([(obj, k)], step, carry)
        self.history[obj].append(step)
        held = self.held.setdefault(obj, [])
        if not carry and k not in held:
            held.append(k)
        self._compose(changed)
        return sorted(changed)

    @torch.no_grad()
    def propagate(self) -> list[int]:
        """Carry from every slice corrected with `carry=False` at once (per object one step of its
        history, which `undo` reverts before the corrections); returns the slices whose labels changed."""
        changed: set[int] = set()
        for obj, frames in sorted(self.held.items()):
            frames = [k for k in frames if k in self.prompts.get(obj, {})]
            if not frames:
                continue
            step = CarryStep(obj, frames[-1], self.prompts[obj][frames[-1]])
            starts = [(obj, k) for k in frames]
            mine: set[int] = set()
            keep = {j for _, k in starts for j in self._reach(obj, k - 1, True)}
            self._sweep(self._leaving(starts, False, step, mine), False, keep, step, mine)
            self._sweep(self._leaving(starts, True, step, mine), True, set(), step, mine)
            self.history[obj].append(step)
            changed |= mine
        self.held = {}
        if self.features is not None:
            self.features.clear()
        self._compose(changed)
        return sorted(changed)

    def _clicks(self, prompt: ObjectPrompt) -> tuple[tuple[tuple[float, float], ...] | None, tuple[int, ...] | None]:
        """The prompt's clicks in the network's frame and their labels (None: no clicks)."""
        if not prompt.points:
            return None, None
        swap = (lambda x, y: (y, x)) if self.transpose else (lambda x, y: (x, y))
        points = tuple(self.slices.point(*swap(x, y)) for x, y in prompt.points)
        return points, tuple(int(v) for v in prompt.point_labels or ())

    def _merge(self, obj: int, k: int, prompt: ObjectPrompt) -> SlicePrompt:
        points, labels = self._clicks(prompt)
        box = None if prompt.box is None else self.slices.key_box(prompt_box(prompt, self.transpose))
        return correction_prompt(self.records[obj], obj, k, box, points, labels)

    @torch.no_grad()
    def undo(self, obj_id: int) -> list[int]:
        """Revert the object's last correction exactly; returns the slices recomposed."""
        if obj_id not in self.prompts:
            raise SessionError(f"object {obj_id} is not in this session (it holds {self.objects})", 404)
        if not self.history[obj_id]:
            raise SessionError(f"nothing to undo for object {obj_id}: it has no correction", 409)
        step = self.history[obj_id].pop()
        if step.prompt is None:
            del self.prompts[obj_id][step.frame]
        else:
            self.prompts[obj_id][step.frame] = step.prompt
        for k, record in step.records.items():
            if record is None:
                self.records[obj_id].pop(k, None)
            else:
                self.records[obj_id][k] = record
        self._compose(step.records)
        return sorted(step.records)

    @torch.no_grad()
    def reset(self, obj_id: int) -> list[int]:
        """Drop the object; returns the slices recomposed."""
        if obj_id not in self.prompts:
            raise SessionError(f"object {obj_id} is not in this session (it holds {self.objects})", 404)
        changed = sorted(self.records.pop(obj_id))
        del self.prompts[obj_id], self.ranges[obj_id], self.range_box[obj_id], self.history[obj_id]
        self.held.pop(obj_id, None)
        self._compose(changed)
        return changed

    def nbytes(self) -> int:
        """Bytes held: the volume, the labels and every object's stored masks."""
        records = sum(r.nbytes() for table in self.records.values() for r in table.values())
        return self.volume.nbytes + self.labels.nbytes + records

    # ------------------------------------------------------------------ the carry

    def _owns(self, obj: int, j: int, reverse: bool) -> bool:
        """Whether the carry of `obj` in this direction reaches slice j from the prompted slice behind
        it: inside the volume and the object's range, not prompted, nearer to that prompted slice
        than to the one ahead (`owns_frame`, ties going up)."""
        span = self.ranges[obj] or (0, self.depth - 1)
        keys = self.prompts[obj]
        return span[0] <= j <= span[1] and j not in keys and owns_frame(sorted(keys), j, reverse)

    def _reach(self, obj: int, j: int, reverse: bool) -> list[int]:
        """The slices from j on that the object's carry in this direction reaches (`_owns`)."""
        reach = []
        while 0 <= j < self.depth and self._owns(obj, j, reverse):
            reach.append(j)
            j += -1 if reverse else 1
        return reach

    def _set(self, obj: int, k: int, record: CarryRecord | None, step: CarryStep | None) -> None:
        if step is not None:
            step.records.setdefault(k, self.records[obj].get(k))
        if record is None:
            self.records[obj].pop(k, None)
        else:
            self.records[obj][k] = record

    def _clear(self, obj: int, j: int, reverse: bool, step: CarryStep | None) -> set[int]:
        """Remove the object's records from slice j on, as far as its carry in this direction reaches."""
        cleared = {k for k in self._reach(obj, j, reverse) if k in self.records[obj]}
        for k in cleared:
            self._set(obj, k, None, step)
        return cleared

    def _run(self, starts: list[tuple[int, int]], step: CarryStep | None, carry: bool = True) -> set[int]:
        """Segment the prompted slices (object, k) of `starts` and carry each outward (`carry`), up in
        one sweep over the slices, then down; returns the slices whose records changed."""
        changed: set[int] = set()
        keep = {j for obj, k in starts for j in self._reach(obj, k - 1, True)} if carry else set()
        up = [Chain(obj, k, False, self.prompts[obj][k], True) for obj, k in starts]
        self._sweep(up, False, keep, step, changed, carry)
        if carry:
            self._sweep(self._leaving(starts, True, step, changed), True, set(), step, changed)
        if self.features is not None:
            self.features.clear()
        return changed

    def _leaving(
        self, starts: list[tuple[int, int]], reverse: bool, step: CarryStep | None, changed: set[int]
    ) -> list[Chain]:
        """The carries leaving the prompted slices (object, k) in one direction, from their records;
        where none leaves, the object's slices that way are cleared."""
        sign, chains = (-1 if reverse else 1), []
        for obj, k in starts:
            record = self.records[obj].get(k)
            if record is not None and record.next_box is not None and self._owns(obj, k + sign, reverse):
                chains.append(Chain(obj, k + sign, reverse, SlicePrompt(record.next_box), False, 1))
            else:
                changed |= self._clear(obj, k + sign, reverse, step)
        return chains

    def _sweep(
        self,
        chains: list[Chain],
        reverse: bool,
        keep: set[int],
        step: CarryStep | None,
        changed: set[int],
        carry: bool = True,
    ):
        """Run `chains` (each at its slice `at`) in one direction, the slices in order, the objects
        on one slice together. A carry ends at the end of its reach, where its mask vanishes or is
        dropped (the rest of its reach cleared), or where the box it brings equals the box the slice
        was segmented with before in this direction: box carry is deterministic, so the stored
        results from there on are what it would compute (followed to where they end)."""
        pending: dict[int, list[Chain]] = {}
        for c in chains:
            pending.setdefault(c.at, []).append(c)
        order = range(self.depth - 1, -1, -1) if reverse else range(self.depth)
        sign = -1 if reverse else 1
        for j in order:
            live = [c for c in pending.pop(j, []) if not self._unchanged(c, j, pending, step, changed)]
            if not live:
                continue
            results = decode_slice(
                self.features, self.slices, self.view, self.settings, j, live, self._ahead(j, reverse, live, pending)
            )
            if self.features is not None and j not in keep:
                self.features.kept.pop(j, None)
            for c, (prompt, logits, iou, small) in zip(live, results):
                record = self._record(c, prompt, logits, iou, small)
                if self._agrees(c, j, record):
                    continue  # the old result of j and beyond stays
                self._set(c.obj, j, record, step)
                changed.add(j)
                if not carry:
                    continue
                if record.next_box is not None and self._owns(c.obj, j + sign, reverse):
                    carried = Chain(c.obj, j + sign, reverse, SlicePrompt(record.next_box), False, c.count + 1)
                    pending.setdefault(j + sign, []).append(carried)
                else:
                    changed |= self._clear(c.obj, j + sign, reverse, step)

    def _unchanged(
        self, c: Chain, j: int, pending: dict[int, list[Chain]], step: CarryStep | None, changed: set[int]
    ) -> bool:
        """Whether carry `c` brings slice j the prompt it had before (same direction): then follow the
        stored records while each got its predecessor's box, and resume (or clear) where they end."""
        old = self.records[c.obj].get(j)
        if c.prompted or old is None or old.reverse != c.reverse or old.prompted or old.prompt != c.prompt:
            return False
        sign, t, prev = (-1 if c.reverse else 1), j, old
        while self._owns(c.obj, t + sign, c.reverse):
            if prev.next_box is None:
                changed |= self._clear(c.obj, t + sign, c.reverse, step)
                break
            rec = self.records[c.obj].get(t + sign)
            carried = SlicePrompt(prev.next_box)
            if rec is None or rec.reverse != c.reverse or rec.prompted or rec.prompt != carried:
                resumed = Chain(c.obj, t + sign, c.reverse, carried, False, c.count + abs(t - j) + 1)
                pending.setdefault(t + sign, []).append(resumed)
                break
            t, prev = t + sign, rec
        return True

    def _agrees(self, c: Chain, j: int, record: CarryRecord) -> bool:
        """Whether a carried (not prompted) slice keeps its old result: its new mask agrees with the old one
        (IoU >= agree_iou), or the old mask was carried the other way (from a prompted slice beyond j)."""
        old = self.records[c.obj].get(j)
        agree = self.settings.agree_iou
        if agree is None or c.prompted or old is None or old.prompted:
            return False
        if old.reverse != c.reverse:
            return old.mask is not None
        if old.mask is None or record.mask is None:
            return old.mask is None and record.mask is None and old.next_box is None and record.next_box is None
        return mask_iou(old, record) >= agree

    def _ahead(self, j: int, reverse: bool, chains: list[Chain], pending: dict[int, list[Chain]]) -> list[int]:
        """The slices after j (in the sweep's direction, up to `encode_batch` - 1) the sweep will likely
        segment: where pending carries start, and the reach of the carries on j (one without a slice
        range no further ahead than it came so far, as its mask may vanish)."""
        if self.features is None:
            return []
        sign, ahead = (-1 if reverse else 1), []
        reach = {c.obj: self._reach(c.obj, j + sign, reverse)[: self.features.batch] for c in chains}
        for d in range(1, self.features.batch):
            s = j + sign * d
            wanted = any(s in reach[c.obj] and (self.ranges[c.obj] is not None or d <= max(1, c.count)) for c in chains)
            if wanted or s in pending:
                ahead.append(s)
        return ahead

    def _record(
        self, c: Chain, prompt: SlicePrompt, logits: torch.Tensor, iou: float | None, small: torch.Tensor | None
    ) -> CarryRecord:
        ranged = self.ranges[c.obj] is not None
        if not c.prompted and not ranged and self.min_iou is not None and iou is not None and iou < self.min_iou:
            return CarryRecord(c.reverse, False, c.prompt, False, None)  # an unsure carried mask: dropped
        mask = torch.sigmoid(logits) > 0.5
        next_box = self.slices.next_box(mask.numpy(), c.obj)
        if next_box is None and ranged:
            next_box = self.range_box[c.obj]  # a 3D box: its key-slice box again (upstream)
        record = CarryRecord(c.reverse, c.prompted, prompt, True, next_box, low_res=small)
        return record.crop(mask, logits if self.overlap == "logit" else None)

    def _compose(self, frames) -> None:
        """Labels of `frames` from the objects' records (`compose_slice`, the objects in the order given)."""
        for j in frames:
            labels = compose_slice([(obj, self.records[obj].get(j)) for obj in self.prompts], self.height, self.width)
            self.labels[..., j] = labels.T if self.transpose else labels
