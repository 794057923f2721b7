"""On-disk cache of a frozen image encoder's outputs (SurgicalSAM precomputes SAM embeddings).

`EmbeddingCache(root, encoder, preprocess).encode(images)` returns what `encoder(images)` returns,
running the encoder only on the images it has not seen. One entry per image:
`root/<key[:2]>/<key>.pt`, a `torch.save` of plain tensors and strings (read back with
`weights_only=True`):
`{"key", "identity", "preprocess", "checksum", "output"}`, `output` the image's slice of the
encoder output (a tensor, or a dict / list / tuple of tensors, batch dimension removed).

Keys: sha256 of the encoder input's bytes, dtype and shape, the encoder's `identity` (sha256 of
its class name and every state-dict entry's name, dtype, shape and bytes, computed once when the
cache is made: the encoder must stay frozen) and the `preprocess` config (canonical JSON).
Another encoder, other weights or another preprocessing therefore never meet an old entry. An entry
whose stored key / identity / preprocess does not match, whose
checksum (sha256 of the output bytes) differs, or that cannot be read (truncated, foreign file) is
ignored with a warning naming the file, recomputed and rewritten. Entries are written to a temporary
file in the same folder and renamed (`os.replace`), so two processes can fill one cache at once:
a reader sees a whole entry or none; two writers of the same key write the same values.

A cache directory that cannot be created or written is refused at construction with one
`PermissionError` naming it (no silent fall back; pass no cache to run without one).

Augmentations before the encoder: the key is the content hash, so every augmented version of a
frame is its own entry; random augmentations drawn fresh each epoch would never hit the cache
(only cost disk). Upstream SurgicalSAM instead precomputes a fixed set of 40 augmented versions
per frame (seeds 1..40) and trains on them. To get that with this cache, make the augmentation
deterministic per (frame, version) - e.g. seed it with `version = epoch % N` - so each frame has
N entries after N epochs; we do not offer a `versions` option here because choosing the
augmented version belongs to the data pipeline, not to the cache.

Size reporting: `len(cache)`, `cache.size_bytes()`, the `hits` / `misses` counters, and
`EmbeddingCacheLogger(cache).attach(engine)` logs one line per epoch (and stores the numbers in
`engine.state.embedding_cache`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

Output = Any  # a tensor, or a dict / list / tuple nesting tensors (the encoder's output)


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data


def encoder_identity(encoder: torch.nn.Module) -> str:
    """sha256 (hex) of the encoder's class name and every state-dict entry (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(f"{type(encoder).__module__}.{type(encoder).__qualname__}".encode())
    for name, tensor in encoder.state_dict().items():
        digest.update(f"|{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def tensor_leaves(output: Output) -> list[torch.Tensor]:
    """The tensors of an encoder output (a tensor, or dicts / lists / tuples of them), in a fixed order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for k in sorted(output) for t in tensor_leaves(output[k])]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in tensor_leaves(item)]
    raise TypeError(f"encoder outputs must be tensors or dicts/lists/tuples of tensors, got {type(output).__name__}")


def _checksum(output: Output) -> str:
    digest = hashlib.sha256()
    for tensor in tensor_leaves(output):
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def content_key(image: torch.Tensor, identity: str, preprocess: str) -> str:
    """sha256 (hex) of one encoder input (its bytes, dtype and shape), the encoder `identity` and the
    `preprocess` string: equal keys mean equal encoder outputs."""
    digest = hashlib.sha256(f"{identity}|{preprocess}|{image.dtype}|{tuple(image.shape)}|".encode())
    digest.update(_tensor_bytes(image))
    return digest.hexdigest()


def _select(output: Output, index: int) -> Output:
    """Sample `index` of a batched output, as its own (cloned, CPU) storage."""
    if isinstance(output, torch.Tensor):
        return output[index].detach().cpu().clone()
    if isinstance(output, Mapping):
        return {k: _select(v, index) for k, v in output.items()}
    return type(output)(_select(v, index) for v in output)


def _stack(samples: list[Output], device: torch.device) -> Output:
    first = samples[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(samples).to(device)
    if isinstance(first, Mapping):
        return {k: _stack([s[k] for s in samples], device) for k in first}
    return type(first)(_stack([s[i] for s in samples], device) for i in range(len(first)))


class EmbeddingCache:
    """Disk cache of `encoder` outputs for encoder inputs (B, C, H, W); see the module docstring.

    `preprocess`: everything that turned a file into the encoder input and is not visible in
    the input itself (e.g. image size, normalisation, model variant); JSON-serialisable.
    """

    def __init__(self, root: str | os.PathLike, encoder: torch.nn.Module, preprocess: Mapping[str, Any]):
        self.root = Path(root)
        self.encoder = encoder.eval()
        self.preprocess = json.dumps(dict(preprocess), sort_keys=True, default=str)
        self.identity = encoder_identity(encoder)
        self.hits = self.misses = 0
        self._check_writable()

    def _check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise PermissionError(
                f"embedding cache directory {self.root} cannot be written ({exc.strerror or exc}); "
                "give a writable cache directory, or run without the cache"
            ) from exc

    def key(self, image: torch.Tensor) -> str:
        """Cache key (sha256 hex) of one encoder input (C, H, W)."""
        return content_key(image, self.identity, self.preprocess)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    def _load(self, key: str) -> Output | None:
        """The stored output for `key`, or None when absent / unreadable / stale (with a warning)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            problem = ""
            if not isinstance(entry, dict) or "output" not in entry:
                problem = "is not a cache entry"
            elif (entry.get("key"), entry.get("identity"), entry.get("preprocess")) != (
                key,
                self.identity,
                self.preprocess,
            ):
                problem = "was written for another image, encoder or preprocessing"
            elif entry.get("checksum") != _checksum(entry["output"]):
                problem = "has a wrong checksum (damaged)"
        except Exception as exc:  # truncated zip, foreign pickle, ...: recompute, never trust it
            problem = f"cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        if problem:
            warnings.warn(f"embedding cache entry {path} {problem}; recomputing it", RuntimeWarning, stacklevel=3)
            return None
        return entry["output"]

    def _store(self, key: str, output: Output) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "key": key,
            "identity": self.identity,
            "preprocess": self.preprocess,
            "checksum": _checksum(output),
            "output": output,
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{key[:8]}-", suffix=".pt")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(entry, f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> Output:
        """Encoder output for `images` (B, C, H, W) on `images.device`, batched as `encoder(images)`
        returns it; the misses go through ONE encoder call (eval mode, no autograd) and are stored."""
        if images.ndim != 4 or len(images) == 0:
            raise ValueError(
                f"EmbeddingCache.encode expects encoder inputs (B >= 1, C, H, W), got {tuple(images.shape)}"
            )
        keys = [self.key(image) for image in images]
        samples: list[Output | None] = [self._load(k) for k in keys]
        missing: dict[str, int] = {}
        for i, (k, s) in enumerate(zip(keys, samples)):
            if s is None:
                missing.setdefault(k, i)
        self.hits += len(keys) - sum(s is None for s in samples)
        self.misses += len(missing)
        if missing:
            self.encoder.eval()
            computed = self.encoder(images[list(missing.values())])
            for j, k in enumerate(missing):
                output = _select(computed, j)
                self._store(k, output)
                missing[k] = output
            samples = [missing[k] if s is None else s for k, s in zip(keys, samples)]
        return _stack(samples, images.device)

    def _entries(self) -> list[Path]:
        return [p for p in self.root.glob("??/*.pt") if not p.name.startswith(".")]

    def __len__(self) -> int:
        return len(self._entries())

    def size_bytes(self) -> int:
        """Bytes on disk of all entries (all encoders / preprocessings sharing this root)."""
        return sum(p.stat().st_size for p in self._entries())

    def summary(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "entries": len(self),
            "size_bytes": self.size_bytes(),
            "hits": self.hits,
            "misses": self.misses,
        }
