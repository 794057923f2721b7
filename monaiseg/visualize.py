"""PNG overlays of label predictions on images (for demos, docs, bundle outputs and reports) and the
matplotlib figures of the evaluation report (per-case metric plot, confusion matrix)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

_COLOURS = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
        [220, 190, 255],
        [170, 110, 40],
    ],
    dtype=np.uint8,
)


def overlay(image: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None, alpha: float = 0.45) -> np.ndarray:
    """RGB (H, W, 3) uint8: `image` (H, W) grey or (H, W, 3) RGB in [0, 1], `pred` labels filled,
    `gt` labels as white contours."""
    rgb = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    rgb = np.ascontiguousarray(rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=-1))
    for value in np.unique(pred[pred > 0]):
        colour = _COLOURS[(int(value) - 1) % len(_COLOURS)]
        mask = pred == value
        rgb[mask] = ((1 - alpha) * rgb[mask] + alpha * colour).astype(np.uint8)
    if gt is not None:
        draw_contours(rgb, gt, (255, 255, 255))
    return rgb


def draw_contours(rgb: np.ndarray, labels: np.ndarray, colour: tuple[int, int, int] | None = None) -> np.ndarray:
    """Outline each label of `labels` (H, W) on `rgb` (H, W, 3) uint8 in place, in `colour` or the
    label's own colour; returns `rgb`."""
    for value in np.unique(labels[labels > 0]):
        contours, _ = cv2.findContours((labels == value).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        c = colour if colour is not None else tuple(int(v) for v in _COLOURS[(int(value) - 1) % len(_COLOURS)])
        cv2.drawContours(rgb, contours, -1, c, 1)
    return rgb


def slice_counts(labels: np.ndarray) -> np.ndarray:
    """(K,) foreground pixels (> 0) per index of the last axis of `labels` (..., K)."""
    return (np.asarray(labels).reshape(-1, labels.shape[-1]) > 0).sum(0)


def key_index(*counts: np.ndarray | None) -> int:
    """The index with the most foreground in the first of `counts` (each (K,) foreground pixels per slice,
    `slice_counts`; e.g. ground truth, then prediction) that has any; ties go to the lowest index; the
    middle one when all are empty."""
    for c in counts:
        if c is not None and np.asarray(c).any():
            return int(np.argmax(np.asarray(c)))
    length = next(len(c) for c in counts if c is not None)
    return length // 2


def channel_first(image: np.ndarray, spatial: Sequence[int]) -> np.ndarray:
    """`image` as (C, *spatial) for label maps of shape `spatial`: already channel-first, without a channel
    (`spatial`), channel-last (*spatial, C), or with extra length-1 axes (a 2D image loaded as (1, H, W, 1)
    or (H, W, 1, 3)). Raises ValueError naming both shapes when none of these fits."""
    image, spatial = np.asarray(image), tuple(spatial)
    if image.shape[1:] == spatial:
        return image
    if image.shape == spatial:
        return image[None]
    core = image.reshape([s for s in image.shape if s != 1] or [1])
    if core.shape == spatial:
        return core[None]
    if core.shape[1:] == spatial:
        return core
    if core.shape[:-1] == spatial:
        return np.moveaxis(core, -1, 0)
    raise ValueError(f"image of shape {image.shape} does not match label maps of shape {spatial}")


def spread_indices(length: int, count: int) -> list[int]:
    """Up to `count` distinct indices spread evenly over 0 .. length - 1, first and last included."""
    return [int(i) for i in np.unique(np.linspace(0, length - 1, num=min(count, length)).round().astype(int))]


def case_picture(
    image: np.ndarray,
    pred: np.ndarray,
    gt: np.ndarray | None = None,
    title: str = "",
    frames: int = 1,
    size: int = 256,
    slice_numbers: Sequence[int] | None = None,
) -> np.ndarray:
    """RGB (H', W', 3) uint8 picture of one case: `image` (C, I, J[, K]) (C = 3: RGB, else channel 0; also
    channel-last or without a channel, see `channel_first`), label maps `pred` / `gt` (I, J[, K]); prediction
    filled and outlined in label colours, ground truth outlined in white, `title` on a bar above. Arrays are
    x first (as MONAI loads them) and shown rows = J. With a last axis K: its key slice (`key_index`, ground
    truth first) when `frames` is 1, else a strip of up to `frames` slices spread over K (`spread_indices`).
    With `slice_numbers` (slices picked beforehand, e.g. from a large volume) all K slices are drawn,
    labelled with these numbers. Each tile is scaled to `size` pixels on its longer side. Raises ValueError
    when the arrays cannot be drawn (shapes, empty or non-finite image)."""
    image = np.asarray(image, dtype=np.float32)
    if image.size == 0:
        raise ValueError(f"image of shape {image.shape}: expected (C, I, J) or (C, I, J, K)")
    image = channel_first(image, pred.shape)
    if image.ndim not in (3, 4):
        raise ValueError(f"image of shape {image.shape}: expected (C, I, J) or (C, I, J, K)")
    spatial = image.shape[1:]
    if gt is not None and gt.shape != spatial:
        raise ValueError(f"ground truth of shape {gt.shape} does not match the prediction's {spatial}")
    grey = image[:3] if image.shape[0] == 3 else image[:1]
    picks: list[int | None]
    if image.ndim == 3:
        picks = [None]
    elif slice_numbers is not None:
        picks = list(range(spatial[-1]))
    elif frames <= 1:
        picks = [key_index(*(None if v is None else slice_counts(v) for v in (gt, pred)))]
    else:
        picks = list[int | None](spread_indices(spatial[-1], frames))
    tiles = []
    for k in picks:
        img = grey if k is None else grey[..., k]
        p = pred if k is None else pred[..., k]
        g = None if gt is None else gt if k is None else gt[..., k]
        img = np.ascontiguousarray(np.moveaxis(img, 0, -1).transpose(1, 0, 2))  # (J, I, C)
        p, g = np.ascontiguousarray(p.T), None if g is None else np.ascontiguousarray(g.T)
        scale = size / max(img.shape[:2])
        if scale < 1:  # shrink first (area for the image, nearest for labels), then draw at the final size
            shape = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
            img = cv2.resize(img, shape, interpolation=cv2.INTER_AREA).reshape(shape[1], shape[0], -1)
            p = cv2.resize(p.astype(np.float32), shape, interpolation=cv2.INTER_NEAREST).astype(np.int32)
            g = None if g is None else cv2.resize(g.astype(np.float32), shape, interpolation=cv2.INTER_NEAREST)
            g = None if g is None else g.astype(np.int32)
        low, high = float(img.min()), float(img.max())
        if not np.isfinite([low, high]).all():
            raise ValueError("image holds NaN or infinite values")
        img = (img - low) / max(high - low, 1e-8)
        tile = overlay(img[..., 0] if img.shape[-1] == 1 else img, p, alpha=0.3)
        draw_contours(tile, p)
        if g is not None:
            draw_contours(tile, g, (255, 255, 255))
        if scale > 1:  # small images: enlarge the drawn tile, pixels stay visible
            tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        if k is not None:
            number = k if slice_numbers is None else slice_numbers[k]
            cv2.putText(tile, f"k={number}", (4, tile.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
        tiles.append(tile)
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 2), (0, 0))) for t in tiles]
    body = np.concatenate(tiles, axis=1)
    bar = np.zeros((22, body.shape[1], 3), np.uint8)
    cv2.putText(bar, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return np.concatenate([bar, body], axis=0)


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG encoding of an RGB (H, W, 3) uint8 picture."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode a picture of shape {rgb.shape} as PNG")
    return buf.tobytes()


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def metric_plot_png(values: Mapping[str, Mapping[str, Sequence[float]]]) -> bytes:
    """PNG of one box + strip plot panel per metric: `values[metric][label]` = per-case values (NaN
    skipped), one box per label with the cases as jittered points; panels wrap onto rows so the figure is
    at most 1100 px wide (bbox_inches="tight" may add a few pixels of tick labels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(values)
    page = 11.0  # inches at 100 dpi: the report's 1200 px column with its margins
    width = min(page, max(4.0, 0.6 * max((len(values[m]) for m in metrics), default=1) + 1.5))
    cols = max(1, min(len(metrics), int(page // width)))
    rows = -(-max(len(metrics), 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.6 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes.flat, metrics):
        labels = list(values[metric])
        data = [np.asarray([v for v in values[metric][n] if np.isfinite(v)], dtype=float) for n in labels]
        ax.boxplot([d if d.size else [np.nan] for d in data], showfliers=False)
        for i, d in enumerate(data, start=1):
            ax.scatter(i + rng.uniform(-0.15, 0.15, d.size), d, s=10, alpha=0.7)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=45, ha="right", fontsize=8)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    return _figure_png(fig)


def confusion_matrix_png(matrix: np.ndarray, class_names: Sequence[str], title: str = "") -> bytes:
    """PNG of a (K, K) confusion matrix (rows: true class, columns: predicted) with the counts written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * k, 1.2 + 0.6 * k), layout="constrained")
    ax.imshow(matrix, cmap="Blues")
    for i in range(k):
        for j in range(k):
            colour = "white" if matrix[i, j] > matrix.max() / 2 else "black"
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=colour)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _figure_png(fig)


def save_montage(
    volume: np.ndarray,
    pred: np.ndarray,
    path: str | Path,
    gt: np.ndarray | None = None,
    num_slices: int = 8,
    scale: int = 3,
) -> Path:
    """Write a one-row PNG of `num_slices` slices (last axis) of (I, J, K) arrays, spread over
    the slices that hold foreground in `gt` (or `pred`). Slices are shown rows = J, columns = I."""
    ref = gt if gt is not None and gt.any() else pred
    ks = np.nonzero(ref.reshape(-1, ref.shape[-1]).any(0))[0]
    ks = ks if ks.size else np.arange(volume.shape[-1])
    picks = np.unique(np.linspace(ks[0], ks[-1], num=min(num_slices, ks.size)).round().astype(int))
    tiles = []
    for k in picks:
        tile = overlay(volume[..., k].T, pred[..., k].T, None if gt is None else gt[..., k].T)
        tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        cv2.putText(tile, f"k={k}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        tiles.append(tile)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(tiles, axis=1), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
