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

import logging
from collections.abc import Mapping
from typing import cast

import numpy as np
import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys
from scipy import ndimage

from monaiseg.inferers.decoding import append_clicks, decode_prompts
from monaiseg.networks.sam_segmenter import SAMSegmenter
from monaiseg.transforms.clicks import jittered_boxes, sample_error_clicks, sample_foreground_clicks
from monaiseg.utils.batch import image_names, plain_tensor, unwrap_model
from monaiseg.utils.distributed import sync_gradients
from monaiseg.utils.precision import autocast, needs_grad_scaler

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- decoding


# ---------------------------------------------------------------- training


def sample_objects(
    label: torch.Tensor, num: int, rng: np.random.Generator, split_components: bool = False, name: str = "?"
) -> torch.Tensor:
    """`num` object masks (num, H, W) bool drawn with replacement (SAM-Med2D's mask_num) from a
    class map (H, W): one object per class value > 0, or per connected component of each class
    with `split_components` (SAM-Med2D's per-instance mask files). ValueError naming `name`
    when the label has no object."""
    label_np = np.asarray(label.detach().cpu())
    objects: list[np.ndarray] = []
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


class InteractiveIteration:
    """`SupervisedTrainer(iteration_update=...)`: one batch of SAM-Med2D click-simulation training.

    Batch: image (B, C, H, W) in [0, 1], label (B, 1, H, W) class map. `mask_num` objects per
    image (K = B * mask_num); first prompt a box (probability `box_prob`, shifted by up to
    `box_shift` px) or a positive click; then `iter_point` rounds as described in the module
    docstring (`mask_only_rounds` False: every round adds a click). The loss function is called
    as loss(mask logits (K, 1, H, W), targets (K, 1, H, W), predicted IoU (K, 1)); one optimizer
    step per round. Output (decollated by the trainer as usual): image, label = targets (K, 1, H, W),
    pred = last logits, loss = mean over the rounds. `amp`: encoder and decoder under autocast with
    `amp_dtype` on the trainer's device (losses in float32; the trainer's GradScaler, where float16
    needs one, scales each step).
    """

    def __init__(
        self,
        mask_num: int = 5,
        iter_point: int = 8,
        box_prob: float = 0.5,
        box_shift: float = 5.0,
        mask_only_rounds: bool = True,
        multimask_output: bool = True,
        split_components: bool = False,
        seed: int = 0,
        amp: bool | str = False,
        amp_dtype: str = "bfloat16",
    ):
        if mask_num < 1 or iter_point < 0:
            raise ValueError(f"mask_num must be >= 1 and iter_point >= 0, got {mask_num} and {iter_point}")
        self.mask_num, self.iter_point, self.box_prob, self.box_shift = mask_num, iter_point, box_prob, box_shift
        self.mask_only_rounds, self.multimask_output = mask_only_rounds, multimask_output
        self.split_components = split_components
        self.amp, self.amp_dtype = amp, amp_dtype
        needs_grad_scaler("cpu", amp, amp_dtype)  # checks the switch and the dtype name now
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
    def _step(engine: SupervisedTrainer, model: torch.nn.Module, loss: torch.Tensor, what: str) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss ({float(loss)}) in {what}: check the images, labels and learning rate"
            )
        engine.optimizer.zero_grad(set_to_none=True)
        scaler = engine.scaler if engine.amp else None
        (scaler.scale(loss) if scaler is not None else loss).backward()
        sync_gradients([p for p in model.parameters() if p.requires_grad])
        if scaler is not None:
            scaler.step(engine.optimizer)
            scaler.update()
        else:
            engine.optimizer.step()

    def __call__(self, engine: SupervisedTrainer, batchdata: Mapping) -> dict:
        image, label = (
            plain_tensor(x) for x in engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)[:2]
        )
        names = image_names(batchdata)
        model = cast(SAMSegmenter, unwrap_model(engine.network))  # (or a network with its API)
        model.train()
        size = tuple(label.shape[-2:])
        gt = torch.cat(
            [
                sample_objects(label[b, 0], self.mask_num, self.rng, self.split_components, names[b])
                for b in range(label.shape[0])
            ]
        )  # (K, H, W)
        targets = gt[:, None].float()
        points = point_labels = boxes = None
        if self.rng.random() < self.box_prob:
            boxes = jittered_boxes(gt, self.rng, self.box_shift)
        else:
            points, point_labels = sample_foreground_clicks(gt, self.rng)
        with autocast(engine.state.device, self.amp, self.amp_dtype):
            embeddings, _ = model.encode_images(image)
            masks, low_res, iou = decode_prompts(
                model, embeddings, size, points, point_labels, boxes, multimask_output=self.multimask_output
            )
        loss = engine.loss_function(masks.float(), targets, iou.float())
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
            with autocast(engine.state.device, self.amp, self.amp_dtype):
                masks, low_res, iou = decode_prompts(
                    model,
                    embeddings,
                    size,
                    prompt_points,
                    prompt_labels,
                    mask_inputs=low_res.detach(),
                    multimask_output=self.multimask_output,
                    prompt_grad=False,
                )
            loss = engine.loss_function(masks.float(), targets, iou.float())
            self._step(engine, model, loss, f"click round {r + 1} of {names}")
            losses.append(loss.detach())
        engine.state.output = {
            CommonKeys.IMAGE: image,
            CommonKeys.LABEL: targets,
            CommonKeys.PRED: masks.detach().float(),
            CommonKeys.LOSS: torch.stack(losses).mean(),
        }
        engine.fire_event(IterationEvents.MODEL_COMPLETED)  # MONAI's decollation / postprocessing hooks
        return engine.state.output


# ---------------------------------------------------------------- evaluation


# ---------------------------------------------------------------- inference from user prompts
