"""MONAI Label infer tasks over our bundles: interactive (prompted 2D, 3D propagation / box carry),
automatic segmentation and classification. Each request runs the bundle's own inference
pipeline (`BundleRuntime.run`) on its own objects and folder; errors of the request (bad prompts,
unreadable image, wrong dimensions) become HTTP 4xx with the message, the server keeps serving.

Interactive tasks reuse image embeddings between requests (`ReusedNetworks`) and keep sessions
for 3D propagation and box carry (`SessionStore`): request params "action" ("new", the default;
"correct", "add" (new objects, e.g. one appearing mid-volume), "propagate", "undo", "reset"),
"propagate" (false on a correction: only its slice changes, until an action "propagate" re-tracks from
every slice so corrected at once), "interaction" (true on a new request: keep a session; its id on
later ones; MONAI Label's `session_id` names one too) and "label" (the object to undo or reset).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from fastapi import HTTPException
from monai.inferers import Inferer
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from monaiseg.inferers import InteractiveSession, PromptSpec
from monaiseg.label.prompts import (
    RequestObject,
    SlicePrompt,
    box_rows,
    image_shape,
    label_value,
    mask_prompt,
    object_prompts,
    parse_objects,
    viewer_objects_json,
)
from monaiseg.label.replies import as_requested, flag, public_message
from monaiseg.label.reuse import ReusedNetworks, TimedReuse
from monaiseg.label.runtime import BundleRuntime, RequestError, root_cause
from monaiseg.label.sessions import EXPIRED, Session, SessionStore, new_session_id
from monaiseg.prompts import ObjectPrompt, prompts_from_json
from monaiseg.utils.batch import unwrap_model

logger = logging.getLogger(__name__)

INPUT_ERRORS = (ValueError, FileNotFoundError, IndexError, KeyError)
ACTIONS = ("new", "add", "correct", "propagate", "undo", "reset")
PLACEHOLDER = [ObjectPrompt(obj_id=1, frame=0, box=(0.0, 0.0, 1.0, 1.0))]  # pipelines require a prompt


class MonaisegInferTask(InferTask):
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
                label_file = as_requested(target, request)
        except RequestError as exc:
            detail = public_message(str(exc), request, workdir)
            raise HTTPException(exc.status, detail=f"{self.runtime.info.name}: {detail}") from None
        except HTTPException:
            raise
        except Exception as exc:
            cause = root_cause(exc)
            if isinstance(cause, INPUT_ERRORS):
                status = getattr(cause, "status", 400)
                detail = public_message(str(cause), request, workdir)
                raise HTTPException(status, detail=f"{self.runtime.info.name}: {detail}") from None
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        result["latencies"] = {**result.get("latencies", {}), "total": round(time.time() - start, 3)}
        result["weights_version"] = self.runtime.weights_version
        return label_file, result

    def infer(self, request: dict, workdir: Path) -> tuple[str | None, dict]:
        raise NotImplementedError

    @staticmethod
    def saved_label(workdir: Path) -> str:
        files = [
            p for p in workdir.rglob("*") if p.is_file() and not any(n in p.name for n in ("overlay", "_instances"))
        ]
        if len(files) != 1:
            raise RuntimeError(f"expected one saved label in {workdir}, found {[p.name for p in files]}")
        return str(files[0])


class SegmentationTask(MonaisegInferTask):
    """Automatic segmentation: the bundle's inference on the whole image, labels from channel_def."""

    def infer(self, request, workdir):
        image_shape(request["image"])  # readable, else 400
        self.runtime.run({"image": request["image"]}, workdir)
        return self.saved_label(workdir), {"labels": self.runtime.info.labels}


class ClassificationTask(MonaisegInferTask):
    """Classification: softmax class scores {class name: score} and the predicted class."""

    infer_type = InferType.CLASSIFICATION

    def infer(self, request, workdir):
        image_shape(request["image"])
        logits = torch.as_tensor(self.runtime.run({"image": request["image"]}, workdir)["pred"]).float().flatten()
        scores = torch.softmax(logits, dim=0).tolist()
        classes = self.runtime.info.classes
        return None, {"scores": dict(zip(classes, scores)), "prediction": classes[int(torch.argmax(logits))]}


class VolumeStep(Inferer):
    """The bundle pipeline's inferer replaced by one session step: `step(model, volume (C, I, J, K),
    prompts)` -> labels (I, J, K), returned as (1, 1, I, J, K) with the input's metadata."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def __call__(self, inputs: torch.Tensor, network, prompts) -> torch.Tensor:
        out = torch.zeros_like(inputs[:, :1], dtype=torch.float32)  # keeps MetaTensor metadata
        given = prompts[0] if not isinstance(prompts[0], str) else prompts_from_json(prompts[0])
        out[0, 0] = self.step(unwrap_model(network), inputs[0], given).to(out.device)
        return out


class InteractiveTask(MonaisegInferTask):
    """Prompted segmentation. The bundle's inferer says what it takes (`prompt_spec`: prompt kinds,
    2D and / or 3D, the form of its input, automatic without prompts) and, with `session(network,
    volume)`, that it keeps 3D sessions with corrections, undo and reset: PropagationInferer (3D,
    points and boxes), BoxCarryInferer (boxes; 2D or a volume; corrected by a box or clicks),
    ObjectPromptInferer (2D points, boxes and a mask), InstancePromptInferer (2D boxes, one cell each;
    no prompt: automatic). Image embeddings are reused between requests (`networks`)."""

    infer_type = InferType.DEEPGROW

    def __init__(
        self, runtime: BundleRuntime, networks: ReusedNetworks | None = None, sessions: SessionStore | None = None
    ):
        super().__init__(runtime)
        self.inferer = runtime.parsed("inferer")
        self.spec: PromptSpec | None = getattr(self.inferer, "prompt_spec", None)
        self.keeps_sessions = hasattr(self.inferer, "session")
        self.networks = networks if networks is not None else ReusedNetworks(None)
        self.sessions = sessions if sessions is not None else SessionStore()

    def infer(self, request, workdir):
        name, path = self.runtime.info.name, request["image"]
        action = str(request.get("action") or "new")
        if action not in ACTIONS:
            raise RequestError(f"unknown action {action!r}; one of {ACTIONS}")
        shape = image_shape(path)
        if len(shape) not in (2, 3):
            raise RequestError(f"image {Path(path).name} has shape {shape}: not a 2D image or a 3D volume")
        is_2d = len(shape) == 2
        if action != "new":
            if not self.keeps_sessions or is_2d:
                raise RequestError(f"{name} keeps no sessions here: send all prompts again (embeddings are reused)")
            return self.continue_session(action, request, workdir, shape)
        spec, masks = self.spec, {}
        if spec is not None and spec.automatic and not any(request.get(k) for k in ("foreground", "roi", "objects")):
            objects = []  # no prompt: the bundle's automatic mode
        elif spec is not None and is_2d and 2 in spec.dims and "mask" in spec.kinds and self.uploaded_mask(request):
            objects, masks = self.mask_objects(request, shape)
        else:
            objects = parse_objects(request, shape, self.runtime.info.labels)
        if spec is None:
            raise RequestError(f"{name}: inferer {type(self.inferer).__name__} takes no prompts", 501)
        if len(shape) not in spec.dims:
            wanted = "3D volumes" if is_2d else "2D images"
            raise RequestError(f"{name} segments {wanted}; image {Path(path).name} is {len(shape)}D {shape}")
        if "points" not in spec.kinds and any(p.points for o in objects for p in o.slices.values()):
            raise RequestError(f"{name} is box-prompted: draw an roi instead of clicking points")
        if spec.form == "objects":
            item = {"image": path, "prompts": object_prompts(objects)}
        elif spec.form == "object_json":
            item = {"image": path, "prompts": viewer_objects_json(objects, masks)}
        else:
            item = {"image": path} | ({"boxes": box_rows(objects)} if objects else {})
        overrides = {}
        if flag(request, "largest_cc"):
            overrides["largest_component"] = True
        session_id = self.session_id(request) if self.keeps_sessions and not is_2d else None
        started: list[InteractiveSession] = []
        if session_id is not None:
            self.sessions.check_owner(session_id, name, self.client(request))  # before any work

            def start(model, volume, prompts):
                started.append(self.inferer.session(model, volume))
                return started[0].start(prompts)

            overrides["inferer"] = VolumeStep(start)
        network = self.networks.network(self.runtime)
        if isinstance(network, TimedReuse):
            network.reset_clock()
        prepared = self.networks.cache
        output = self.runtime.run(item, workdir, image_2d=is_2d, network=network, prepared=prepared, **overrides)
        result: dict[str, Any] = {"labels": {o.name: o.value for o in objects} or self.runtime.info.labels}
        if isinstance(network, TimedReuse):  # the prompt encoder and mask decoder of this request
            result["latencies"] = {"decoder": round(network.decoder_seconds, 4)}
        pred = torch.as_tensor(output["pred"])
        if pred.ndim == 4:  # (1, I, J, K): which slices hold a label
            result["slices"] = torch.nonzero(pred[0].reshape(-1, pred.shape[-1]).any(0)).flatten().tolist()
        if session_id is not None:
            session = Session(session_id, self.client(request), name, path, self.runtime.weights_version, started[0])
            self.sessions.put(session)
            result["interaction"] = self.session_json(session, "new", list(range(shape[-1])))
        return self.saved_label(workdir), result

    @staticmethod
    def uploaded_mask(request: dict) -> str | None:
        """MONAI Label's uploaded `label` file (the client's current segment: a temporary file, by its
        absolute path), if the request has one; a "label" param (an object name) replaces it."""
        label = request.get("label")
        return label if isinstance(label, str) and Path(label).is_absolute() and Path(label).is_file() else None

    def mask_objects(self, request: dict, shape: tuple[int, ...]) -> tuple[list[RequestObject], dict]:
        """2D refine: the object named by "object" with the uploaded mask as its mask prompt and the
        request's clicks / roi, if any -> ([object], {value: (I, J) mask})."""
        value, name = label_value(request.get("object"), self.runtime.info.labels, strict=True)
        uploaded = self.uploaded_mask(request)
        if uploaded is None:
            raise RequestError("a mask refinement needs the current segment uploaded as the request's label")
        mask = mask_prompt(uploaded, shape, value)
        if any(request.get(k) for k in ("foreground", "background", "roi")):
            objects = parse_objects({**request, "label": value, "objects": None}, shape, self.runtime.info.labels)
        else:
            objects = [RequestObject(value, name, {0: SlicePrompt()})]
        return objects, {value: mask}

    @staticmethod
    def client(request: dict) -> str:
        return str(request.get("client_id") or "")

    @staticmethod
    def session_id(request: dict, new: bool = True) -> str | None:
        """The session a request names: MONAI Label's session, else our "interaction" id; a new
        request with "interaction": true gets a fresh id; None: no session."""
        ml_session = request.get("session")
        if isinstance(ml_session, dict) and ml_session.get("name"):
            return str(ml_session["name"])
        given = request.get("interaction")
        if given in (None, "", False, "false", "False"):
            return None
        if given in (True, "true", "True"):
            return new_session_id() if new else None
        return str(given)

    def session_json(self, session: Session, action: str, changed: list[int]) -> dict:
        state: InteractiveSession = session.state
        names = {v: k for k, v in self.runtime.info.labels.items()}
        return {
            "id": session.id,
            "action": action,
            "changed_slices": changed,
            "objects": {names.get(o, str(o)): o for o in state.objects},
            "history": {names.get(o, str(o)): len(state.history[o]) for o in state.objects},
            "bytes": state.nbytes(),
        }

    def correction(self, request: dict, shape: tuple[int, ...]) -> ObjectPrompt:
        """The one object prompt of a correction: clicks and / or a box on one slice, or a mask
        (an uploaded `label` file, for the object named by "object", on "slice")."""
        uploaded = self.uploaded_mask(request)
        if uploaded is not None:
            if request.get("slice") is None:
                raise RequestError("a mask correction names its 'slice'")
            value, _ = label_value(request.get("object"), self.runtime.info.labels, strict=True)
            frame = int(request["slice"])
            return ObjectPrompt(obj_id=value, frame=frame, mask=mask_prompt(uploaded, shape, value, frame))
        prompts = object_prompts(parse_objects(request, shape, self.runtime.info.labels))
        if len(prompts) != 1:
            raise RequestError("a correction gives prompts for one object on one slice")
        return prompts[0]

    def continue_session(self, action: str, request: dict, workdir: Path, shape: tuple[int, ...]):
        """A correction, undo or reset on the session the request names (checked before anything changes)."""
        name = self.runtime.info.name
        session_id = self.session_id(request, new=False)
        if session_id is None:  # MONAI Label drops an expired session_id when the request also names an image
            raise RequestError(f"{EXPIRED}: {action} names no live session (session_id or 'interaction')", 410)
        network = self.networks.network(self.runtime)  # a changed model.pt is loaded now, so the version check sees it
        if isinstance(network, TimedReuse):
            network.reset_clock()
        session = self.sessions.get(
            session_id, name, self.client(request), request["image"], self.runtime.weights_version
        )
        with session.lock:
            state: InteractiveSession = session.state
            if action == "correct":
                target = self.correction(request, shape)
                if target.obj_id not in state.objects:
                    raise RequestError(
                        f"object {target.obj_id} is not in session {session_id} ({state.objects}): "
                        "add it with action 'add'",
                        404,
                    )
                carry = flag(request, "propagate", default=True)

                def step(model, volume, _prompts):
                    return state.correct(target, carry=carry), state.labels

            elif action == "add":
                added = object_prompts(parse_objects(request, shape, self.runtime.info.labels))

                def step(model, volume, _prompts):
                    return state.add(added), state.labels

            elif action == "propagate":

                def step(model, volume, _prompts):
                    return state.propagate(), state.labels

            else:
                value, label = label_value(request.get("label"), self.runtime.info.labels, strict=True)
                if value not in state.objects:
                    raise RequestError(f"object {label!r} is not in session {session_id} ({state.objects})", 404)
                if action == "undo" and not state.history[value]:
                    raise RequestError(f"nothing to undo for {label!r} in session {session_id}", 409)

                def step(model, volume, _prompts):
                    return (state.undo(value) if action == "undo" else state.reset(value)), state.labels

            changed: list[int] = []

            def apply(model, volume, prompts):
                slices, labels = step(model, volume, prompts)
                changed.extend(slices)
                return labels

            overrides: dict[str, Any] = {"inferer": VolumeStep(apply)}
            if flag(request, "largest_cc"):
                overrides["largest_component"] = True
            item = {"image": request["image"], "prompts": PLACEHOLDER}
            self.runtime.run(item, workdir, prepared=self.networks.cache, **overrides)
        result: dict[str, Any] = {"labels": {k: v for k, v in self.runtime.info.labels.items() if v in state.objects}}
        result["slices"] = torch.nonzero(state.labels.reshape(-1, shape[-1]).any(0)).flatten().tolist()
        result["interaction"] = self.session_json(session, action, changed)
        if isinstance(network, TimedReuse):
            result["latencies"] = {"decoder": round(network.decoder_seconds, 4)}
        return self.saved_label(workdir), result


TASKS = {
    "interactive-2d": InteractiveTask,
    "interactive-3d": InteractiveTask,
    "segmentation": SegmentationTask,
    "classification": ClassificationTask,
}
