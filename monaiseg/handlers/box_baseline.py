"""SAM-AutoMed vs. SAM-Med2D prompted with ground-truth boxes, on the same evaluation images.

`BoxPromptComparison` is an evaluator handler. For every evaluated image it takes the
ground-truth mask of each class, prompts the SAM-Med2D `network` with that mask's tight box
(one box per class present; an absent class gets no box and an empty prediction, so the box
baseline is told which classes are present, which the automatic model is not), thresholds the
mask logits at 0, and scores both methods per class with the same Dice and IoU (MONAI
`compute_dice` / `compute_iou`, empty ground truth and empty prediction = 1).

Written when the evaluator completes (atomically): `comparison.csv` (image, class, then Dice and
IoU of each method) and `summary.json` (means per method, per class, seconds per image). Under
torch.distributed the ranks' rows are merged in dataset order (seconds summed) and rank 0 alone writes.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from monai.engines import Workflow
from monai.metrics import compute_dice, compute_iou

from monaiseg.handlers.collector import OutputCollector
from monaiseg.networks.sam_segmenter import SAMSegmenter
from monaiseg.prompts import mask_box
from monaiseg.utils.batch import source_name
from monaiseg.utils.distributed import gather_in_dataset_order, is_rank0, sum_over_ranks
from monaiseg.utils.files import atomic_outputs

logger = logging.getLogger(__name__)


def class_scores(pred: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
    """Binary class masks (C, H, W) -> {"dice": (C,), "iou": (C,)}; empty label and prediction = 1."""
    pred, label = pred[None].float(), label[None].float()
    return {
        "dice": compute_dice(pred, label, ignore_empty=False)[0],
        "iou": compute_iou(pred, label, ignore_empty=False)[0],
    }


@torch.no_grad()
def box_prompt_masks(network: SAMSegmenter, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """SAM prediction (C, H, W) bool from the tight box of each non-empty mask of `masks` (C, H, W)
    on `image` (channels, H, W); classes with an empty mask stay empty."""
    pred = torch.zeros_like(masks, dtype=torch.bool)
    present = [c for c in range(masks.shape[0]) if masks[c].any()]
    if present:
        boxes = torch.tensor([mask_box(masks[c].cpu().numpy()) for c in present], dtype=torch.float32)
        device = next(network.parameters()).device
        logits, _ = network.predict_masks(image[None].to(device), boxes=boxes.to(device))
        pred[present] = (logits[:, 0] > 0).to(pred.device)
    return pred


class BoxPromptComparison(OutputCollector):
    """Evaluator handler comparing the evaluated (automatic) model with `network` (SAM-Med2D)
    prompted by ground-truth boxes. Outputs are de-collated items with `image` (channels, H, W)
    and one-hot `pred`, `label` (C + 1, H, W); `class_names` name channels 1..C (a list, or a
    mapping whose values are taken in order)."""

    def __init__(
        self,
        network: SAMSegmenter,
        output_dir: str,
        class_names: Sequence[str] | Mapping,
        method: str = "sam_automed",
        baseline: str = "sam_med2d_box",
    ):
        self.network = network.eval()
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names.values()) if isinstance(class_names, Mapping) else list(class_names)
        self.methods = (method, baseline)
        self.rows: list[dict] = []
        self.seconds = {method: 0.0, baseline: 0.0}

    def reset(self, engine: Workflow) -> None:
        self.rows.clear()
        self.seconds = dict.fromkeys(self.methods, 0.0)

    def collect(self, engine: Workflow) -> None:
        method, baseline = self.methods
        self.seconds[method] += time.perf_counter() - self._start
        for item in engine.state.output:
            label = torch.as_tensor(item["label"])[1:] > 0.5
            if label.shape[0] != len(self.class_names):
                raise ValueError(f"{len(self.class_names)} class names for {label.shape[0]} label channels")
            start = time.perf_counter()
            boxed = box_prompt_masks(self.network, torch.as_tensor(item["image"]), label)
            self.seconds[baseline] += time.perf_counter() - start
            scores = {
                method: class_scores(torch.as_tensor(item["pred"])[1:] > 0.5, label),
                baseline: class_scores(boxed, label),
            }
            name = source_name(item, "image")
            for c, class_name in enumerate(self.class_names):
                row = {"image": name, "class": class_name}
                for m in self.methods:
                    row.update({f"{m}_dice": float(scores[m]["dice"][c]), f"{m}_iou": float(scores[m]["iou"][c])})
                self.rows.append(row)

    def summary(self) -> dict:
        """{"num_images", "classes", <method>: {"dice", "iou", "seconds_per_image",
        "per_class": {class: {"dice", "iou"}}}}."""
        num_images = len(self.rows) // max(len(self.class_names), 1)
        out: dict = {"num_images": num_images, "classes": self.class_names}
        for m in self.methods:
            per_class = {
                c: {
                    k: sum(r[f"{m}_{k}"] for r in self.rows if r["class"] == c) / max(num_images, 1)
                    for k in ("dice", "iou")
                }
                for c in self.class_names
            }
            out[m] = {k: sum(r[f"{m}_{k}"] for r in self.rows) / max(len(self.rows), 1) for k in ("dice", "iou")}
            out[m]["seconds_per_image"] = self.seconds[m] / max(num_images, 1)
            out[m]["per_class"] = per_class
        return out

    def merge_ranks(self) -> None:
        """Replace this rank's rows and seconds by those of every rank, rows in dataset order (a collective call)."""
        per_image = max(len(self.class_names), 1)
        images = [self.rows[i : i + per_image] for i in range(0, len(self.rows), per_image)]
        self.rows = [row for image in gather_in_dataset_order(images) for row in image]
        self.seconds = {m: sum_over_ranks(s) for m, s in self.seconds.items()}

    def write(self, engine: Workflow) -> None:
        self.merge_ranks()
        if not is_rank0():
            return
        if not self.rows:
            raise ValueError("BoxPromptComparison: the evaluator produced no images to compare")
        csv_path, json_path = self.output_dir / "comparison.csv", self.output_dir / "summary.json"
        with atomic_outputs(csv_path, json_path) as (tmp_csv, tmp_json):
            with open(tmp_csv, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(self.rows[0]))
                writer.writeheader()
                writer.writerows(self.rows)
            tmp_json.write_text(json.dumps(self.summary(), indent=2))
        logger.info("%s vs %s written to %s", *self.methods, csv_path)
