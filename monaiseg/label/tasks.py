"""MONAI Label infer tasks over our bundles: interactive (prompted 2D, 3D propagation / box carry),
automatic segmentation and classification. Each request runs the bundle's own inference
pipeline (`BundleRuntime.run`) on its own objects and folder; errors of the request (bad prompts,
unreadable image, wrong dimensions) become HTTP 4xx with the message, the server keeps serving.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from monaiseg.label.prompts import box_rows, image_shape, object_prompts, parse_objects, viewer_objects_json
from monaiseg.label.runtime import BundleRuntime, RequestError, root_cause

logger = logging.getLogger(__name__)

INPUT_ERRORS = (ValueError, FileNotFoundError, IndexError, KeyError)


class BundleInferTask(InferTask):
    """Base: runs `infer(request, workdir) -> (label file or None, result JSON)` in a fresh folder."""

    infer_type = InferType.SEGMENTATION

    def __init__(self, runtime: BundleRuntime):
        info = runtime.info
        super().__init__(
            type=self.infer_type,
            labels=info.classes or info.labels,
            dimension=info.dimension,
            description=f"{info.name}: {info.description}",
            config={"largest_cc": False},
        )
        self.runtime = runtime

    def is_valid(self) -> bool:
        return True

    def get_path(self, validate=True):
        return str(self.runtime.info.weights)

    def __call__(self, request) -> tuple[str | None, dict]:
        start = time.time()
        workdir = tempfile.mkdtemp(prefix=f"monaiseg-{self.runtime.info.name}-")
        try:
            label_file, result = self.infer(request, Path(workdir))
            if label_file is not None:  # out of the request folder, which is removed now
                fd, target = tempfile.mkstemp(
                    suffix="".join(Path(label_file).suffixes[-2:])
                    if str(label_file).endswith(".nii.gz")
                    else Path(label_file).suffix
                )
                os.close(fd)
                shutil.move(label_file, target)
                label_file = target
        except RequestError as exc:
            raise HTTPException(exc.status, detail=f"{self.runtime.info.name}: {exc}") from None
        except HTTPException:
            raise
        except Exception as exc:
            cause = root_cause(exc)
            if isinstance(cause, INPUT_ERRORS):
                raise HTTPException(400, detail=f"{self.runtime.info.name}: {cause}") from None
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        result["latencies"] = {"total": round(time.time() - start, 3)}
        result["weights_version"] = self.runtime.weights_version
        return label_file, result

    def infer(self, request: dict, workdir: Path) -> tuple[str | None, dict]:
        raise NotImplementedError

    @staticmethod
    def saved_label(workdir: Path) -> str:
        files = [p for p in workdir.rglob("*") if p.is_file() and "overlay" not in p.name]
        if len(files) != 1:
            raise RuntimeError(f"expected one saved label in {workdir}, found {[p.name for p in files]}")
        return str(files[0])


class SegmentationTask(BundleInferTask):
    """Automatic segmentation: the bundle's inference on the whole image, labels from channel_def."""

    def infer(self, request, workdir):
        image_shape(request["image"])  # readable, else 400
        self.runtime.run({"image": request["image"]}, workdir)
        return self.saved_label(workdir), {"labels": self.runtime.info.labels}


class ClassificationTask(BundleInferTask):
    """Classification: softmax class scores {class name: score} and the predicted class."""

    infer_type = InferType.CLASSIFICATION

    def infer(self, request, workdir):
        image_shape(request["image"])
        logits = torch.as_tensor(self.runtime.run({"image": request["image"]}, workdir)["pred"]).float().flatten()
        scores = torch.softmax(logits, dim=0).tolist()
        classes = self.runtime.info.classes
        return None, {"scores": dict(zip(classes, scores)), "prediction": classes[int(torch.argmax(logits))]}


class InteractiveTask(BundleInferTask):
    """Prompted segmentation. The prompt form follows the bundle's inferer:
    PropagationInferer (3D, points and boxes, bidirectional from the prompted slices),
    BoxCarryInferer (boxes; 2D or a volume by box carry), ObjectPromptInferer (2D points and boxes),
    InstancePromptInferer (2D boxes, one cell each; no prompt: automatic)."""

    infer_type = InferType.DEEPGROW

    def __init__(self, runtime: BundleRuntime):
        super().__init__(runtime)
        self.inferer = str(runtime.config()["inferer"]["_target_"]).rsplit(".", 1)[-1]

    def infer(self, request, workdir):
        name, path = self.runtime.info.name, request["image"]
        shape = image_shape(path)
        if len(shape) not in (2, 3):
            raise RequestError(f"image {Path(path).name} has shape {shape}: not a 2D image or a 3D volume")
        is_2d = len(shape) == 2
        if self.inferer == "InstancePromptInferer" and not any(
            request.get(k) for k in ("foreground", "roi", "objects")
        ):
            objects = []  # no prompt: the bundle's automatic mode
        else:
            objects = parse_objects(request, shape, self.runtime.info.labels)
        has_points = any(p.points for o in objects for p in o.slices.values())
        overrides = {}
        if self.inferer == "PropagationInferer":
            if is_2d:
                raise RequestError(f"{name} propagates through volumes; image {Path(path).name} is 2D {shape}")
            item = {"image": path, "prompts": object_prompts(objects)}
        elif self.inferer == "BoxCarryInferer":
            if has_points:
                raise RequestError(f"{name} is box-prompted: draw an roi instead of clicking points")
            prompts = object_prompts(objects)
            if len({p.obj_id for p in prompts}) != len(prompts):
                raise RequestError(f"{name} takes one roi (key slice) per object")
            item = {"image": path, "prompts": prompts}
        elif self.inferer in ("ObjectPromptInferer", "InstancePromptInferer"):
            if not is_2d:
                raise RequestError(f"{name} segments 2D images; image {Path(path).name} is 3D {shape}")
            if self.inferer == "ObjectPromptInferer":
                item = {"image": path, "prompts": viewer_objects_json(objects)}
            else:
                if has_points:
                    raise RequestError(f"{name} takes one roi (box) per cell, not points")
                item = {"image": path} | ({"boxes": box_rows(objects)} if objects else {})
        else:
            raise RequestError(f"{name}: inferer {self.inferer} takes no prompts", 501)
        if request.get("largest_cc") in (True, "true", "True", 1):
            overrides["largest_component"] = True
        output = self.runtime.run(item, workdir, image_2d=is_2d, **overrides)
        result = {"labels": {o.name: o.value for o in objects} or self.runtime.info.labels}
        pred = torch.as_tensor(output["pred"])
        if pred.ndim == 4:  # (1, I, J, K): which slices hold a label
            result["slices"] = torch.nonzero(pred[0].reshape(-1, pred.shape[-1]).any(0)).flatten().tolist()
        return self.saved_label(workdir), result


TASKS = {
    "interactive-2d": InteractiveTask,
    "interactive-3d": InteractiveTask,
    "segmentation": SegmentationTask,
    "classification": ClassificationTask,
}
