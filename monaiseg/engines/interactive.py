"""Interactive (click-simulation) training and evaluation of SAM-style models, as SAM-Med2D.

Training (`InteractiveIteration`, a `SupervisedTrainer.iteration_update`): per image
`mask_num` object masks are drawn from its class map; the first prompt is a box or one
positive click at random; the image is encoded once (gradients reach the trainable encoder
parts, e.g. SAM-Med2D's adapters) and an optimizer step follows; then `iter_point` rounds
reuse the detached embeddings, each adding one correction click from the error of the previous
mask (`clicks.sample_error_click`) and feeding the previous low-res logits back as the mask
prompt, one step per round. Two rounds (one at random in the middle and the last) get the mask
prompt only, without clicks, as SAM-Med2D's train.py does.

Evaluation (`InteractiveInferer`): each object (class) of an image is segmented in every
prompt mode, "box" (tight box) and "points_N" (one positive click, then N - 1 correction clicks
with the mask fed back), clicks drawn with a seed from the image name; `InteractiveReportWriter`
writes one CSV per mode and a summary table.

Inference (`prompted_items`, `ObjectPromptInferer`): user boxes / points per object from a
JSON sidecar, checked against the image before anything runs, merged into one label map.

Multi-process training does not wrap the model in DistributedDataParallel (the encoder and the
decoder run separately, several steps per batch): `sync_gradients` averages gradients over the
ranks before each step and `broadcast_parameters` makes the ranks start equal.
"""

from __future__ import annotations

import csv
import json
import logging
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.engines.utils import IterationEvents, PrepareBatch
from monai.inferers import Inferer
from monai.utils import CommonKeys
from PIL import Image
from scipy import ndimage

from monaiseg.data.datalist import atomic_outputs
from monaiseg.networks.trainable import parameter_report

from .clicks import jittered_boxes, sample_error_clicks, sample_foreground_clicks

logger = logging.getLogger(__name__)


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    return network.module if hasattr(network, "module") else network


def _plain(x: torch.Tensor) -> torch.Tensor:
    """A MetaTensor batch as a plain tensor (slicing batched metadata is fragile)."""
    return x.as_tensor() if isinstance(x, MetaTensor) else x


def _names(batch: Mapping, key: str = "image") -> list[str]:
    """File names of the batch's images (from their metadata), '?' when unknown."""
    image = batch[key]
    meta = getattr(image, "meta", {}) or {}
    names = meta.get("filename_or_obj", ["?"] * len(image))
    return [str(n) for n in (names if isinstance(names, (list, tuple)) else [names])]


# ---------------------------------------------------------------- decoding


def decode_prompts(
    model,
    embeddings: torch.Tensor,
    size: Sequence[int],
    points: torch.Tensor | None = None,
    point_labels: torch.Tensor | None = None,
    boxes: torch.Tensor | None = None,
    mask_inputs: torch.Tensor | None = None,
    multimask_output: bool = True,
    prompt_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode K = B * n prompt rows on B image embeddings (B, 256, h, w) computed once.

    Rows b * n .. b * n + n - 1 belong to image b. Prompts are in pixels of an (H, W) = `size`
    image: points (K, N, 2) (x, y) with point_labels (K, N), boxes (K, 4), mask_inputs (K, 1,
    4h, 4w) logits (a previous `low_res`). With `multimask_output` the mask with the highest
    predicted IoU of SAM's three is kept (SAM-Med2D). `prompt_grad` False: the prompt encoder
    runs without autograd (SAM-Med2D's click rounds). Returns mask logits (K, 1, H, W),
    low-res logits (K, 1, 4h, 4w) and predicted IoU (K, 1).
    """
    with torch.set_grad_enabled(prompt_grad and torch.is_grad_enabled()):
        sparse, dense = model.encode_prompts(tuple(size), boxes, points, point_labels, mask_inputs)
    low_res, iou = model.decode(embeddings, sparse, dense, multimask_output)
    if multimask_output:
        best = iou.argmax(dim=1, keepdim=True)
        low_res = torch.take_along_dim(low_res, best[:, :, None, None], dim=1)
        iou = torch.take_along_dim(iou, best, dim=1)
    masks = F.interpolate(low_res, size=tuple(size), mode="bilinear", align_corners=False)
    return masks, low_res, iou


def append_clicks(points: torch.Tensor | None, labels: torch.Tensor | None, new_points: torch.Tensor,
                  new_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clicks so far (K, N, 2) / (K, N) (or None) plus one more each -> (K, N + 1, 2) / (K, N + 1)."""
    if points is None:
        return new_points, new_labels
    return torch.cat([points, new_points], dim=1), torch.cat([labels, new_labels], dim=1)


# ---------------------------------------------------------------- training


def sample_objects(label: torch.Tensor, num: int, rng: np.random.Generator, split_components: bool = False,
                   name: str = "?") -> torch.Tensor:
    """`num` object masks (num, H, W) bool drawn with replacement (SAM-Med2D's mask_num) from a
    class map (H, W): one object per class value > 0, or per connected component of each class
    with `split_components` (SAM-Med2D's per-instance mask files). ValueError naming `name`
    when the label has no object."""
    label_np = np.asarray(label.detach().cpu())
    objects = []
    for value in np.unique(label_np):
        if value <= 0:
            continue
        mask = label_np == value
        if split_components:
            components, count = ndimage.label(mask)
            objects.extend(components == i for i in range(1, count + 1))
        else:
            objects.append(mask)
    if not objects:
        raise ValueError(f"{name}: the label has no object (all background): nothing to prompt")
    chosen = rng.integers(len(objects), size=num)
    return torch.as_tensor(np.stack([objects[i] for i in chosen]), device=label.device)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sync_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Average the gradients of `parameters` over all ranks (no-op in one process). A parameter
    without a gradient on some ranks counts as zero there (ranks may draw different prompts);
    one without a gradient on every rank keeps none, so the optimizer skips it as in one process."""
    world = _world_size()
    if world == 1 or not parameters:
        return
    present = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32, device=parameters[0].device)
    dist.all_reduce(present)
    for param, count in zip(parameters, present.tolist()):
        if count == 0:
            continue
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad)
        param.grad /= world


def broadcast_parameters(model: torch.nn.Module) -> torch.nn.Module:
    """Copy rank 0's parameters and buffers to every rank (no-op in one process)."""
    if _world_size() > 1:
        for tensor in _unwrap(model).state_dict().values():
            dist.broadcast(tensor, src=0)
    return model


class InteractiveIteration:
    """`SupervisedTrainer(iteration_update=...)`: one batch of SAM-Med2D click-simulation training.

    Batch: image (B, C, H, W) in [0, 1], label (B, 1, H, W) class map. `mask_num` objects per
    image (K = B * mask_num); first prompt a box (probability `box_prob`, shifted by up to
    `box_shift` px) or a positive click; then `iter_point` rounds as described in the module
    docstring (`mask_only_rounds` False: every round adds a click). The loss function is called
    as loss(mask logits (K, 1, H, W), targets (K, 1, H, W), predicted IoU (K, 1)); one optimizer
    step per round. Output (decollated by the trainer as usual): image, label = targets (K, 1, H, W),
    pred = last logits, loss = mean over the rounds.
    """

    def __init__(self, mask_num: int = 5, iter_point: int = 8, box_prob: float = 0.5, box_shift: float = 5.0,
                 mask_only_rounds: bool = True, multimask_output: bool = True, split_components: bool = False,
                 seed: int = 0):
        if mask_num < 1 or iter_point < 0:
            raise ValueError(f"mask_num must be >= 1 and iter_point >= 0, got {mask_num} and {iter_point}")
        self.mask_num, self.iter_point, self.box_prob, self.box_shift = mask_num, iter_point, box_prob, box_shift
        self.mask_only_rounds, self.multimask_output = mask_only_rounds, multimask_output
        self.split_components = split_components
        self.rng = np.random.default_rng(seed)

    def mask_only(self) -> set[int]:
        """Rounds (0-based) that get the mask prompt alone: the last one and one drawn from
        1 .. iter_point - 2 (SAM-Med2D), when `mask_only_rounds` and there are enough rounds."""
        if not self.mask_only_rounds or self.iter_point == 0:
            return set()
        rounds = {self.iter_point - 1}
        if self.iter_point >= 3:
            rounds.add(int(self.rng.integers(1, self.iter_point - 1)))
        return rounds

    @staticmethod
    def _step(engine: Engine, model: torch.nn.Module, loss: torch.Tensor, what: str) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss ({float(loss)}) in {what}: check the images, labels and learning rate")
        engine.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sync_gradients([p for p in model.parameters() if p.requires_grad])
        engine.optimizer.step()

    def __call__(self, engine: Engine, batchdata: Mapping) -> dict:
        image, label = (_plain(x) for x in engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)[:2])
        names = _names(batchdata)
        model = _unwrap(engine.network)
        model.train()
        size = tuple(label.shape[-2:])
        gt = torch.cat([sample_objects(label[b, 0], self.mask_num, self.rng, self.split_components, names[b])
                        for b in range(label.shape[0])])  # (K, H, W)
        targets = gt[:, None].float()
        points = point_labels = boxes = None
        if self.rng.random() < self.box_prob:
            boxes = jittered_boxes(gt, self.rng, self.box_shift)
        else:
            points, point_labels = sample_foreground_clicks(gt, self.rng)
        embeddings, _ = model.encode_images(image)
        masks, low_res, iou = decode_prompts(model, embeddings, size, points, point_labels, boxes,
                                             multimask_output=self.multimask_output)
        loss = engine.loss_function(masks, targets, iou)
        self._step(engine, model, loss, f"the first prompt of {names}")
        losses = [loss.detach()]
        embeddings = embeddings.detach()
        mask_only = self.mask_only()
        for r in range(self.iter_point):
            prompt_points = prompt_labels = None
            if r not in mask_only:
                new = sample_error_clicks(masks.detach()[:, 0] > 0, gt, self.rng)
                points, point_labels = append_clicks(points, point_labels, *new)
                prompt_points, prompt_labels = points, point_labels
            masks, low_res, iou = decode_prompts(model, embeddings, size, prompt_points, prompt_labels,
                                                 mask_inputs=low_res.detach(), multimask_output=self.multimask_output,
                                                 prompt_grad=False)
            loss = engine.loss_function(masks, targets, iou)
            self._step(engine, model, loss, f"click round {r + 1} of {names}")
            losses.append(loss.detach())
        engine.state.output = {CommonKeys.IMAGE: image, CommonKeys.LABEL: targets, CommonKeys.PRED: masks.detach(),
                               CommonKeys.LOSS: torch.stack(losses).mean()}
        engine.fire_event(IterationEvents.MODEL_COMPLETED)  # MONAI's decollation / postprocessing hooks
        return engine.state.output


# ---------------------------------------------------------------- evaluation


def parse_mode(mode: str) -> int:
    """'box' -> 0, 'points_N' -> N (N >= 1); ValueError otherwise."""
    if mode == "box":
        return 0
    if mode.startswith("points_") and mode[7:].isdigit() and int(mode[7:]) >= 1:
        return int(mode[7:])
    raise ValueError(f"unknown prompt mode {mode!r}: use 'box' or 'points_N' (N >= 1 clicks)")


def image_seed(seed: int, name: str) -> np.random.Generator:
    """A generator that depends only on `seed` and the image's file name (not its folder or order)."""
    return np.random.default_rng([seed, zlib.crc32(Path(name).name.encode())])


class PrepareInteractiveBatch(PrepareBatch):
    """Batch -> (image, label, (), {"labels": label, "names": image file names}) for `InteractiveInferer`."""

    def __call__(self, batchdata, device=None, non_blocking: bool = False, **kwargs):
        image = batchdata["image"].to(device=device, non_blocking=non_blocking)
        label = batchdata["label"].to(device=device, non_blocking=non_blocking)
        return image, label, (), {"labels": label, "names": _names(batchdata)}


class InteractiveInferer(Inferer):
    """`inferer(images, network, labels=..., names=...)` -> binary masks (B, M * C, H, W).

    images (B, C, H, W) in [0, 1], labels (B, 1, H, W) class maps; channel m * C + c is the mask
    of class `class_values[c]` in prompt mode `modes[m]` (zeros where the class is absent). The
    image is encoded once; "points_N" modes share one click sequence (the 3-click result is the
    1-click run continued), clicks drawn from `image_seed(seed, name)`.
    """

    def __init__(self, modes: Sequence[str] = ("box", "points_1", "points_3", "points_5"),
                 class_values: Sequence[int] = (1,), seed: int = 0, multimask_output: bool = True):
        super().__init__()
        self.modes = list(modes)
        self.clicks = {mode: parse_mode(mode) for mode in self.modes}
        self.class_values = [int(v) for v in class_values]
        self.seed, self.multimask_output = seed, multimask_output

    def segment(self, model, image: torch.Tensor, gt: torch.Tensor, name: str) -> dict[str, torch.Tensor]:
        """Masks (K, H, W) bool per mode for one image (1, C, H, W) and its objects gt (K, H, W)."""
        size = tuple(gt.shape[-2:])
        embeddings, _ = model.encode_images(image)
        results = {}
        if "box" in self.clicks:
            masks = decode_prompts(model, embeddings, size, boxes=jittered_boxes(gt), multimask_output=self.multimask_output)[0]
            results["box"] = masks[:, 0] > 0
        wanted = {n: mode for mode, n in self.clicks.items() if n > 0}
        if wanted:
            rng = image_seed(self.seed, name)
            points, labels = sample_foreground_clicks(gt, rng)
            low_res = None
            for n in range(1, max(wanted) + 1):
                if n > 1:
                    points, labels = append_clicks(points, labels, *sample_error_clicks(masks[:, 0] > 0, gt, rng))
                masks, low_res, _ = decode_prompts(model, embeddings, size, points, labels, mask_inputs=low_res,
                                                   multimask_output=self.multimask_output)
                if n in wanted:
                    results[wanted[n]] = masks[:, 0] > 0
        return results

    def __call__(self, inputs: torch.Tensor, network, labels: torch.Tensor, names: Sequence[str] | None = None) -> torch.Tensor:
        model = _unwrap(network)
        inputs, labels = _plain(inputs), _plain(labels)
        batch, _, height, width = inputs.shape
        num_classes = len(self.class_values)
        out = torch.zeros((batch, len(self.modes) * num_classes, height, width), device=inputs.device)
        for b in range(batch):
            present = [(c, v) for c, v in enumerate(self.class_values) if (labels[b, 0] == v).any()]
            if not present:
                continue
            gt = torch.stack([labels[b, 0] == v for _, v in present])
            results = self.segment(model, inputs[b : b + 1], gt, names[b] if names else str(b))
            for m, mode in enumerate(self.modes):
                for k, (c, _) in enumerate(present):
                    out[b, m * num_classes + c] = results[mode][k].float()
        return out


def modes_onehot(label: torch.Tensor, class_values: Sequence[int], num_modes: int) -> torch.Tensor:
    """Class map (1, H, W) -> one binary channel per class, repeated per mode: (M * C, H, W),
    the layout of `InteractiveInferer`'s output (for MONAI's Dice / IoU metrics)."""
    onehot = torch.cat([(label == int(v)) for v in class_values]).float()
    return onehot.repeat(num_modes, 1, 1)


class InteractiveReportWriter:
    """When the evaluator finishes: `<output_dir>/<mode>.csv` (image, class, dice, iou; one row
    per image and class present) and `summary.json` ({"table": {mode: {dice, iou}}, "per_class":
    {mode: {class: {dice, iou}}}, "num_images", "parameters"}), from the per-case details of the
    metrics `metric_names` {column: evaluator metric name} (save_details), laid out as
    `InteractiveInferer`'s channels. Single-process evaluation (image names are not gathered)."""

    def __init__(self, output_dir: str, modes: Sequence[str], class_names: Mapping,
                 metric_names: Mapping[str, str], network: torch.nn.Module | None = None):
        self.output_dir, self.modes = Path(output_dir), list(modes)
        self.class_names = [str(v) for v in class_names.values()]
        self.metric_names = dict(metric_names)
        self.network = network
        self.images: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: self.images.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine: Engine) -> None:
        for item in engine.state.output:
            self.images.append(Path(str(item[CommonKeys.IMAGE].meta.get("filename_or_obj", "?"))).name)

    def write(self, engine: Engine) -> None:
        num_classes = len(self.class_names)
        details = {column: torch.as_tensor(engine.state.metric_details[name]).float().cpu()
                   .reshape(-1, len(self.modes), num_classes) for column, name in self.metric_names.items()}
        table, per_class = {}, {}
        for m, mode in enumerate(self.modes):
            rows = []
            for i, image in enumerate(self.images):
                for c, cls in enumerate(self.class_names):
                    values = {column: float(d[i, m, c]) for column, d in details.items()}
                    if not any(np.isnan(v) for v in values.values()):
                        rows.append({"image": image, "class": cls, **values})
            with atomic_outputs(self.output_dir / f"{mode}.csv") as (tmp,), open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["image", "class", *details])
                writer.writeheader()
                writer.writerows(rows)
            table[mode] = {column: float(d[:, m].nanmean()) for column, d in details.items()}
            per_class[mode] = {cls: {column: float(d[:, m, c].nanmean()) for column, d in details.items()}
                               for c, cls in enumerate(self.class_names)}
        summary = {"table": table, "per_class": per_class, "num_images": len(self.images)}
        if self.network is not None:
            summary["parameters"] = parameter_report(_unwrap(self.network))
        with atomic_outputs(self.output_dir / "summary.json") as (tmp,):
            tmp.write_text(json.dumps(summary, indent=2))
        logger.info("interactive evaluation (%d images) written to %s: %s", len(self.images), self.output_dir, table)


# ---------------------------------------------------------------- inference from user prompts


def read_object_prompts(path: str | Path, width: int, height: int) -> list[dict]:
    """Objects of a prompt sidecar for an image of `width` x `height` pixels, checked.

    Format: {"objects": [{"label": 1, "box": [x0, y0, x1, y1]},
                         {"label": 2, "points": [[x, y], ...], "point_labels": [1, 0, ...]}, ...]}
    pixels of the image as viewers show it (x = column, y = row, from 0); an object may give a
    box, points or both; point_labels (1 foreground, 0 background) default to all 1; "label"
    (1..255, unique) is the object's value in the output label map; "name" is optional.
    Returns [{"label", "box" or None, "points" or None, "point_labels" or None}]. ValueError naming the file.
    """
    path = Path(path)
    try:
        objects = json.loads(path.read_text())["objects"]
        if not isinstance(objects, list) or not objects:
            raise ValueError("'objects' must be a non-empty list")
    except FileNotFoundError:
        raise FileNotFoundError(f"prompt file {path} not found (give --input_prompts or a <image name>.json sidecar)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"prompt file {path}: not a JSON object with a non-empty 'objects' list ({exc})") from None
    checked, seen = [], set()
    for n, obj in enumerate(objects):
        try:
            value = int(obj["label"])
            if not 1 <= value <= 255 or value in seen:
                raise ValueError(f"label {value} must be unique and in 1..255")
            seen.add(value)
            box = obj.get("box")
            points, point_labels = obj.get("points"), obj.get("point_labels")
            if box is None and points is None:
                raise ValueError("give a 'box' and/or 'points'")
            if box is not None:
                box = [float(v) for v in box]
                x0, y0, x1, y1 = box
                if not (0 <= x0 <= x1 <= width - 1 and 0 <= y0 <= y1 <= height - 1):
                    raise ValueError(f"box {box} is outside the {width}x{height} image or not [x0, y0, x1, y1]")
            if points is not None:
                points = [[float(x), float(y)] for x, y in points]
                point_labels = [1] * len(points) if point_labels is None else [int(v) for v in point_labels]
                if not points or len(point_labels) != len(points) or not set(point_labels) <= {0, 1}:
                    raise ValueError("'points' must be non-empty with one point_label (1 or 0) per point")
                outside = [p for p in points if not (0 <= p[0] <= width - 1 and 0 <= p[1] <= height - 1)]
                if outside:
                    raise ValueError(f"point(s) {outside} outside the {width}x{height} image")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"prompt file {path}, object #{n}: {exc}") from None
        checked.append({"label": value, "box": box, "points": points, "point_labels": point_labels})
    return checked


def prompted_items(images: str | Sequence[str], prompts: str | Sequence[str] | None = None) -> list[dict]:
    """Inference items [{"image", "prompts": JSON of the checked objects}] for image paths and
    their prompt files (default: the sidecar `<image without extension>.json`). Every image
    header and prompt file is checked before anything runs, so a bad one stops the run with
    one error naming it and no outputs."""
    images = [images] if isinstance(images, (str, Path)) else list(images)
    if prompts is None:
        prompts = [str(Path(p).with_suffix(".json")) for p in images]
    prompts = [prompts] if isinstance(prompts, (str, Path)) else list(prompts)
    if len(prompts) != len(images):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompt files")
    items = []
    for image, prompt in zip(images, prompts):
        try:
            with Image.open(image) as img:
                width, height = img.size
        except FileNotFoundError:
            raise FileNotFoundError(f"image {image} not found") from None
        except OSError as exc:
            raise ValueError(f"{image}: not a readable PNG / JPEG / BMP image ({exc})") from None
        items.append({"image": str(image), "prompts": json.dumps(read_object_prompts(prompt, width, height))})
    return items


class ObjectPromptInferer(Inferer):
    """`inferer(images, network, prompts=...)` -> label maps (B, 1, H, W): each pixel takes the
    label of the object with the highest positive logit, 0 elsewhere.

    images (B, C, H, W) in [0, 1] (rows x columns, as the prompts' x / y); prompts: per image
    the JSON list of `read_object_prompts`. The image is encoded once; each object is decoded
    with its own box and / or points.
    """

    def __init__(self, multimask_output: bool = True):
        super().__init__()
        self.multimask_output = multimask_output

    def __call__(self, inputs: torch.Tensor, network, prompts: Sequence[str]) -> torch.Tensor:
        model = _unwrap(network)
        if len(prompts) != inputs.shape[0]:
            raise ValueError(f"got {len(prompts)} prompt lists for a batch of {inputs.shape[0]} images")
        out = torch.zeros_like(inputs[:, :1], dtype=torch.float32)  # keeps MetaTensor metadata
        size = tuple(inputs.shape[-2:])
        device = inputs.device
        for b in range(inputs.shape[0]):
            embeddings, _ = model.encode_images(inputs[b : b + 1])
            logits, values = [], []
            for obj in json.loads(prompts[b]):
                box = None if obj["box"] is None else torch.tensor([obj["box"]], device=device)
                points = labels = None
                if obj["points"] is not None:
                    points = torch.tensor([obj["points"]], device=device)
                    labels = torch.tensor([obj["point_labels"]], device=device)
                masks = decode_prompts(model, embeddings, size, points, labels, box, multimask_output=self.multimask_output)[0]
                logits.append(masks[0, 0])
                values.append(obj["label"])
            best, index = torch.stack(logits).max(dim=0)
            ids = torch.tensor(values, device=device, dtype=torch.float32)[index]
            out[b, 0] = torch.where(best > 0, ids, torch.zeros_like(ids)).to(out.device)
        return out
