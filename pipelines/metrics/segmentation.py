"""Segmentation metrics in millimetres: Dice, HD95 and normalised surface Dice (NSD), per case and per class.

Surfaces follow Nikolov et al., "Clinically applicable segmentation of head and neck anatomy for radiotherapy"
(JMIR 2021) and DeepMind's ``surface-distance`` package: the surface of a binary mask is made of the
``2 x 2 (x 2)`` neighbourhoods of voxel centres that contain both foreground and background. Each such surface
element sits on the corner grid (voxel centres shifted by half a voxel), carries the length (2D, marching squares)
or area (3D, marching cubes) of the iso-contour through it in mm, and its distance to the other mask's surface is the
Euclidean distance transform of the other surface's element grid, with the image spacing.

* HD95 is the larger of the two directed 95th percentiles (prediction -> ground truth and back), each percentile
  weighted by surface-element area, exactly as ``compute_robust_hausdorff(compute_surface_distances(...), 95)``.
* NSD at tolerance ``tau`` is the area of both surfaces lying within ``tau`` mm of the other surface, divided by the
  total area of both surfaces (``compute_surface_dice_at_tolerance``).
* Empty masks follow the BraTS challenge convention (Bakas et al., arXiv:1811.02629): both empty ->
  Dice 1, HD95 0, NSD 1; exactly one empty -> Dice 0, NSD 0, HD95 = the image diagonal in mm. No metric is ever NaN,
  so a missed structure is penalised instead of dropping out of the mean.
* :class:`PerChannelDice` is the Dice alone, with the same convention, as a MONAI ``Cumulative`` metric over torch
  tensors: fast enough for every validation of a training run, and equal to the Dice of :class:`SurfaceMetrics`, so
  the checkpoint a training selects is scored exactly as the evaluation reports it.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from monai.data.utils import affine_to_spacing
from monai.metrics import CumulativeIterationMetric
from scipy import ndimage

__all__ = [
    "PerChannelDice",
    "SEGMENTATION_METRICS",
    "SurfaceDistances",
    "SurfaceMetrics",
    "compute_segmentation_metrics",
    "compute_surface_distances",
    "dice",
    "dice_per_channel",
    "hd95",
    "image_diagonal_mm",
    "nsd",
    "spacing_from_meta",
]

SEGMENTATION_METRICS = ("dice", "hd95", "nsd")


class SurfaceDistances(NamedTuple):
    """Directed surface distances and the size of each surface element (length in 2D, area in 3D), in mm."""

    distances_gt_to_pred: np.ndarray
    distances_pred_to_gt: np.ndarray
    areas_gt: np.ndarray
    areas_pred: np.ndarray


def _as_mask(x: Any, name: str) -> np.ndarray:
    """Binary numpy mask from a bool/int/float numpy array or tensor (values > 0.5 are foreground)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype != bool:
        x = x > 0.5
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D or 3D mask, got shape {x.shape}.")
    return x


def _check_pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _as_mask(pred, "pred"), _as_mask(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape, got {pred.shape} and {gt.shape}.")
    return pred, gt


def _check_spacing(spacing: Any, ndim: int) -> tuple[float, ...]:
    if isinstance(spacing, torch.Tensor):
        spacing = spacing.detach().cpu().tolist()
    if np.isscalar(spacing):
        spacing = (float(spacing),) * ndim
    spacing = tuple(float(s) for s in np.asarray(spacing, dtype=float).ravel())
    if len(spacing) != ndim or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be {ndim} positive numbers (mm per axis), got {spacing}.")
    return spacing


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length of the image diagonal in mm, ``sqrt(sum((shape_i * spacing_i) ** 2))``: HD95 when one mask is empty.

    For BraTS' ``240 x 240 x 155`` grid at 1 mm this is 373.13 mm.
    """
    spacing = _check_spacing(spacing, len(shape))
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


@functools.lru_cache(maxsize=64)
def _element_size_table(spacing: tuple[float, ...]) -> np.ndarray:
    """Length (2D) or area (3D) in mm of the iso-contour through each ``2 x 2 (x 2)`` neighbourhood code.

    Bit ``k`` of a code is the corner at offset ``np.unravel_index(k, (2,) * ndim)``.

    2D (marching squares, contour through edge midpoints): one or three corners inside -> one segment cutting a
    corner, ``0.5 * sqrt(s0^2 + s1^2)``; two corners on a side -> a straight segment across the square (length of the
    side it is parallel to); two diagonal corners -> two corner segments; none or all -> 0.

    3D (marching cubes, Lorensen & Cline 1987, vertices at edge midpoints, scikit-image's ``lorensen`` tables):
    a configuration and its complement bound the same surface; as in Nikolov et al.'s table the configuration with
    at most four inside corners sets the triangulation (ambiguous faces keep diagonal corners apart).
    """
    ndim = len(spacing)
    offsets = list(itertools.product((0, 1), repeat=ndim))
    table = np.zeros(2 ** (2**ndim), dtype=np.float64)
    if ndim == 2:
        corner = 0.5 * math.hypot(*spacing)
        for code in range(1, 15):
            inside = [o for k, o in enumerate(offsets) if code >> k & 1]
            if len(inside) in (1, 3):
                table[code] = corner
            elif inside[0][0] == inside[1][0]:  # same row: the contour runs along axis 1
                table[code] = spacing[1]
            elif inside[0][1] == inside[1][1]:  # same column: the contour runs along axis 0
                table[code] = spacing[0]
            else:  # diagonal corners
                table[code] = 2 * corner
        return table
    from skimage.measure import marching_cubes, mesh_surface_area

    for code in range(1, 255):
        canonical = code if bin(code).count("1") <= 4 else 255 - code
        cube = np.array([canonical >> k & 1 for k in range(8)], dtype=np.float32).reshape(2, 2, 2)
        verts, faces, _, _ = marching_cubes(cube, level=0.5, spacing=spacing, method="lorensen")
        table[code] = mesh_surface_area(verts, faces)
    return table


def _neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """Code of every ``2 x 2 (x 2)`` neighbourhood of the zero-padded mask (one more position than voxels per axis)."""
    padded = np.pad(mask, 1).astype(np.uint8)
    codes = np.zeros(tuple(n - 1 for n in padded.shape), dtype=np.int32)
    for k, offset in enumerate(itertools.product((0, 1), repeat=mask.ndim)):
        window = tuple(slice(o, o + n) for o, n in zip(offset, codes.shape))
        codes += padded[window].astype(np.int32) << k
    return codes


def compute_surface_distances(pred: Any, gt: Any, spacing: Sequence[float]) -> SurfaceDistances:
    """Distances from every surface element of one mask to the other mask's surface, with element sizes.

    Both arrays of a direction are sorted by distance. A direction is empty when its source mask is empty, and its
    distances are ``inf`` when the other mask is empty.

    Args:
        pred: binary prediction ``(H, W)`` or ``(H, W, D)``, numpy or torch (values > 0.5 are foreground).
        gt: binary ground truth of the same shape.
        spacing: mm per axis (a number for isotropic spacing).

    Returns:
        :class:`SurfaceDistances` in mm (lengths in mm in 2D, areas in mm^2 in 3D).
    """
    pred, gt = _check_pair(pred, gt)
    spacing = _check_spacing(spacing, pred.ndim)
    union = pred | gt
    if not union.any():
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, empty, empty)
    # crop to the bounding box of both masks: distances between surface elements do not depend on the crop
    nonzero = np.nonzero(union)
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in nonzero)
    table = _element_size_table(spacing)
    full = 2 ** (2**pred.ndim) - 1
    codes = {key: _neighbour_codes(mask[box]) for key, mask in (("pred", pred), ("gt", gt))}
    borders = {key: (c != 0) & (c != full) for key, c in codes.items()}
    distance_maps = {
        key: ndimage.distance_transform_edt(~b, sampling=spacing) if b.any() else np.full(b.shape, np.inf)
        for key, b in borders.items()
    }

    def _directed(source: str, target: str) -> tuple[np.ndarray, np.ndarray]:
        distances = distance_maps[target][borders[source]]
        areas = table[codes[source][borders[source]]]
        order = np.lexsort((areas, distances))
        return distances[order], areas[order]

    d_gt, a_gt = _directed("gt", "pred")
    d_pred, a_pred = _directed("pred", "gt")
    return SurfaceDistances(d_gt, d_pred, a_gt, a_pred)


def _percentile_from_distances(sd: SurfaceDistances, percentile: float) -> float:
    values = []
    for distances, areas in ((sd.distances_gt_to_pred, sd.areas_gt), (sd.distances_pred_to_gt, sd.areas_pred)):
        cumulative = np.cumsum(areas) / np.sum(areas)
        index = min(int(np.searchsorted(cumulative, percentile / 100.0)), len(distances) - 1)
        values.append(float(distances[index]))
    return max(values)


def _nsd_from_distances(sd: SurfaceDistances, tolerance_mm: float) -> float:
    close_gt = np.sum(sd.areas_gt[sd.distances_gt_to_pred <= tolerance_mm])
    close_pred = np.sum(sd.areas_pred[sd.distances_pred_to_gt <= tolerance_mm])
    return float((close_gt + close_pred) / (np.sum(sd.areas_gt) + np.sum(sd.areas_pred)))


def dice(pred: Any, gt: Any) -> float:
    """Dice coefficient ``2 |P & G| / (|P| + |G|)`` of two binary masks; 1.0 when both are empty.

    Args:
        pred: binary prediction, 2D or 3D, numpy or torch.
        gt: binary ground truth of the same shape.
    """
    pred, gt = _check_pair(pred, gt)
    total = int(pred.sum()) + int(gt.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(pred, gt).sum()) / total


def dice_per_channel(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Dice of every item and channel of a batch, with the empty-mask convention of :func:`dice`.

    Args:
        y_pred: binary prediction ``(B, C, *spatial)`` (values > 0.5 are foreground).
        y: binary ground truth of the same shape.

    Returns:
        ``(B, C)`` float64 tensor: ``2 |P & G| / (|P| + |G|)``, 1 where both masks are empty, 0 where exactly one is.
    """
    y_pred, y = torch.as_tensor(y_pred), torch.as_tensor(y)
    if y_pred.shape != y.shape or y_pred.ndim < 3:
        raise ValueError(f"y_pred and y must be (B, C, *spatial) of one shape, got {tuple(y_pred.shape)}, "
                         f"{tuple(y.shape)}.")
    pred, gt = y_pred.detach() > 0.5, y.detach() > 0.5
    dims = tuple(range(2, pred.ndim))
    intersection = torch.logical_and(pred, gt).sum(dim=dims).double()
    total = (pred.sum(dim=dims) + gt.sum(dim=dims)).double()
    return torch.where(total > 0, 2.0 * intersection / total.clamp(min=1.0), torch.ones_like(total))


def hd95(pred: Any, gt: Any, spacing: Sequence[float], percentile: float = 95.0) -> float:
    """Robust (95th percentile) Hausdorff distance in mm between the surfaces of two masks.

    Args:
        pred: binary prediction, 2D or 3D, numpy or torch.
        gt: binary ground truth of the same shape.
        spacing: mm per axis.
        percentile: the percentile, 95 for HD95, 100 for the Hausdorff distance.

    Returns:
        The larger of the two directed area-weighted percentiles; 0 when both masks are empty, the image diagonal
        in mm when exactly one is empty.
    """
    pred, gt = _check_pair(pred, gt)
    spacing = _check_spacing(spacing, pred.ndim)
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}.")
    has_pred, has_gt = bool(pred.any()), bool(gt.any())
    if not has_pred and not has_gt:
        return 0.0
    if has_pred != has_gt:
        return image_diagonal_mm(pred.shape, spacing)
    return _percentile_from_distances(compute_surface_distances(pred, gt, spacing), percentile)


def nsd(pred: Any, gt: Any, spacing: Sequence[float], tolerance_mm: float = 1.0) -> float:
    """Normalised surface Dice at ``tolerance_mm`` (Nikolov et al. 2021).

    Args:
        pred: binary prediction, 2D or 3D, numpy or torch.
        gt: binary ground truth of the same shape.
        spacing: mm per axis.
        tolerance_mm: surface elements closer than this (inclusive) to the other surface count as overlapping.

    Returns:
        Value in [0, 1]; 1 when both masks are empty, 0 when exactly one is.
    """
    pred, gt = _check_pair(pred, gt)
    spacing = _check_spacing(spacing, pred.ndim)
    if tolerance_mm < 0:
        raise ValueError(f"tolerance_mm must be >= 0, got {tolerance_mm}.")
    has_pred, has_gt = bool(pred.any()), bool(gt.any())
    if not has_pred and not has_gt:
        return 1.0
    if has_pred != has_gt:
        return 0.0
    return _nsd_from_distances(compute_surface_distances(pred, gt, spacing), tolerance_mm)


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in SEGMENTATION_METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {SEGMENTATION_METRICS}, got {metrics}.")
    return metrics


def _case_metrics(
    pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...], metrics: tuple[str, ...], tolerance_mm: float
) -> list[float]:
    """All requested metrics of one binary mask pair, computing the surface distances once."""
    values: dict[str, float] = {}
    if "dice" in metrics:
        values["dice"] = dice(pred, gt)
    if "hd95" in metrics or "nsd" in metrics:
        has_pred, has_gt = bool(pred.any()), bool(gt.any())
        if has_pred and has_gt:
            sd = compute_surface_distances(pred, gt, spacing)
            values["hd95"] = _percentile_from_distances(sd, 95.0)
            values["nsd"] = _nsd_from_distances(sd, tolerance_mm)
        elif has_pred or has_gt:
            values["hd95"], values["nsd"] = image_diagonal_mm(pred.shape, spacing), 0.0
        else:
            values["hd95"], values["nsd"] = 0.0, 1.0
    return [values[m] for m in metrics]


def compute_segmentation_metrics(
    pred: Any,
    gt: Any,
    spacing: Sequence[float],
    class_names: Sequence[str],
    tolerance_mm: float = 1.0,
    metrics: Sequence[str] = SEGMENTATION_METRICS,
) -> dict[str, float]:
    """Every metric for every class of one case.

    Args:
        pred: binary prediction ``(C, *spatial)`` (one-hot or multi-label channels, e.g. BraTS TC/WT/ET), 2D or 3D.
        gt: binary ground truth of the same shape.
        spacing: mm per spatial axis.
        class_names: one name per channel.
        tolerance_mm: NSD tolerance in mm.
        metrics: subset of ``("dice", "hd95", "nsd")``.

    Returns:
        ``{f"{metric}_{class}": value}``, classes in channel order, metrics in the given order per class.

    Raises:
        ValueError: when shapes, channel count, spacing or metric names do not fit.
    """
    metrics = _check_metrics(metrics)
    pred = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    gt = gt.detach().cpu().numpy() if isinstance(gt, torch.Tensor) else np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim not in (3, 4):
        raise ValueError(f"pred and gt must have the same (C, *spatial) shape, got {pred.shape} and {gt.shape}.")
    if len(class_names) != pred.shape[0]:
        raise ValueError(f"{pred.shape[0]} channels but {len(class_names)} class names: {tuple(class_names)}.")
    spacing = _check_spacing(spacing, pred.ndim - 1)
    result = {}
    for c, name in enumerate(class_names):
        p, g = _check_pair(pred[c], gt[c])
        for metric, value in zip(metrics, _case_metrics(p, g, spacing, metrics, tolerance_mm)):
            result[f"{metric}_{name}"] = value
    return result


def spacing_from_meta(x: Any, spatial_dims: int) -> list[tuple[float, ...]] | None:
    """Spacing of each item of a (batched) MetaTensor from its affine, or ``None`` for a plain tensor.

    The affine is used rather than ``meta["pixdim"]`` because spatial transforms (``Spacingd``, ``Orientationd``)
    update the affine but leave the header's ``pixdim`` as loaded. Without an affine, ``meta["pixdim"]`` is read
    (NIfTI layout, ``pixdim[1:1 + spatial_dims]``, when it has more entries than spatial dims).

    Args:
        x: ``(B, C, *spatial)`` MetaTensor (batched affine ``(B, 4, 4)`` or one shared ``(4, 4)``) or plain tensor.
        spatial_dims: number of spatial axes.

    Returns:
        One spacing tuple per item, or ``None`` when ``x`` carries no spatial metadata.
    """
    meta = getattr(x, "meta", None)
    if not isinstance(meta, dict):
        return None
    batch = int(x.shape[0])
    affine = meta.get("affine")
    if affine is not None:
        affine = torch.as_tensor(affine, dtype=torch.float64)
        affines = affine if affine.ndim == 3 else affine.unsqueeze(0).expand(batch, -1, -1)
        return [tuple(float(v) for v in affine_to_spacing(a, r=spatial_dims)) for a in affines]
    pixdim = meta.get("pixdim")
    if pixdim is None:
        return None
    pixdim = torch.as_tensor(pixdim, dtype=torch.float64)
    rows = pixdim if pixdim.ndim == 2 else pixdim.unsqueeze(0).expand(batch, -1)
    start = 1 if rows.shape[-1] > spatial_dims else 0
    return [tuple(float(v) for v in row[start : start + spatial_dims]) for row in rows]


class SurfaceMetrics(CumulativeIterationMetric):
    """Per-case Dice, HD95 and NSD in mm for every class, accumulated over batches (MONAI ``Cumulative`` pattern).

    Each call adds one row per item to the buffer, a ``(B, C, M)`` float64 tensor for ``C`` classes and ``M``
    metrics; :meth:`get_buffer` gathers the rows of all ranks under DDP, so :meth:`aggregate` sees every case.

    The spacing of each item is, in order of precedence: the ``spacing`` argument of the call (one spacing for the
    batch or one per item), the ``spacing`` given to the constructor, the affine (or ``pixdim``) of ``y_pred`` when
    it is a MetaTensor, then that of ``y``. Without any of these the call fails: surface metrics are in mm.

    Example::

        metric = SurfaceMetrics(class_names=("TC", "WT", "ET"), tolerance_mm=1.0)
        for batch in loader:
            metric(y_pred=binarised_pred, y=label)  # MetaTensors: spacing from their affine
        means = metric.aggregate()  # {"dice_TC": ..., "hd95_TC": ..., ...}
        rows = metric.per_case()  # one dict per case
        metric.reset()

    Args:
        class_names: one name per channel; ``None`` names them ``"0"``, ``"1"``, ...
        metrics: subset of ``("dice", "hd95", "nsd")``, in the order of the buffer's last axis.
        tolerance_mm: NSD tolerance in mm.
        spacing: default mm per spatial axis for all items.
    """

    def __init__(
        self,
        class_names: Sequence[str] | None = None,
        metrics: Sequence[str] = SEGMENTATION_METRICS,
        tolerance_mm: float = 1.0,
        spacing: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.class_names = tuple(class_names) if class_names is not None else None
        self.metrics = _check_metrics(metrics)
        self.tolerance_mm = float(tolerance_mm)
        self.spacing = spacing

    def _spacings(self, y_pred: torch.Tensor, y: torch.Tensor, spacing: Any) -> list[tuple[float, ...]]:
        batch, spatial_dims = int(y_pred.shape[0]), y_pred.ndim - 2
        if spacing is None:
            spacing = self.spacing
        if spacing is not None:
            arr = np.asarray(spacing.detach().cpu() if isinstance(spacing, torch.Tensor) else spacing, dtype=float)
            if arr.ndim == 2:
                if arr.shape[0] != batch:
                    raise ValueError(f"got {arr.shape[0]} spacings for a batch of {batch}: {arr.tolist()}.")
                return [_check_spacing(row, spatial_dims) for row in arr]
            return [_check_spacing(arr, spatial_dims)] * batch
        for source in (y_pred, y):
            found = spacing_from_meta(source, spatial_dims)
            if found is not None:
                return [_check_spacing(s, spatial_dims) for s in found]
        raise ValueError(
            "no spacing for surface metrics: pass spacing=..., or MetaTensors with an affine "
            "(keep metadata, e.g. EnsureTyped(track_meta=True))."
        )

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """Rows of one batch.

        Args:
            y_pred: binarised prediction ``(B, C, *spatial)``.
            y: binary ground truth of the same shape.
            kwargs: ``spacing`` (optional), one spacing or one per item.

        Returns:
            ``(B, C, M)`` float64 tensor.
        """
        if y is None:
            raise ValueError("SurfaceMetrics needs the ground truth y.")
        if y_pred.shape != y.shape or y_pred.ndim not in (4, 5):
            raise ValueError(f"y_pred and y must be (B, C, *spatial) of one shape, got {y_pred.shape}, {y.shape}.")
        if self.class_names is not None and len(self.class_names) != y_pred.shape[1]:
            raise ValueError(f"{y_pred.shape[1]} channels but {len(self.class_names)} class names: {self.class_names}.")
        spacings = self._spacings(y_pred, y, kwargs.get("spacing"))
        pred_np = torch.as_tensor(y_pred).detach().cpu().numpy() > 0.5
        gt_np = torch.as_tensor(y).detach().cpu().numpy() > 0.5
        rows = [
            [_case_metrics(pred_np[b, c], gt_np[b, c], spacings[b], self.metrics, self.tolerance_mm)
             for c in range(pred_np.shape[1])]
            for b in range(pred_np.shape[0])
        ]
        return torch.tensor(rows, dtype=torch.float64)

    def column_names(self, num_classes: int | None = None) -> list[str]:
        """``f"{metric}_{class}"`` for each class (outer) and metric (inner), the order of :meth:`per_case` rows."""
        names = self.class_names or tuple(str(c) for c in range(num_classes or 0))
        return [f"{metric}_{name}" for name in names for metric in self.metrics]

    def per_case(self, case_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One dict per buffered case: ``{"case_id": ..., "dice_TC": ..., "hd95_TC": ..., ...}``.

        Args:
            case_ids: one id per case in buffer order; default ``"case_0000"``, ``"case_0001"``, ...
        """
        buffer = self.get_buffer()
        if buffer is None:
            return []
        buffer = torch.as_tensor(buffer).reshape(buffer.shape[0], -1, len(self.metrics))
        columns = self.column_names(buffer.shape[1])
        if case_ids is None:
            case_ids = [f"case_{i:04d}" for i in range(buffer.shape[0])]
        if len(case_ids) != buffer.shape[0]:
            raise ValueError(f"{len(case_ids)} case ids for {buffer.shape[0]} buffered cases.")
        return [
            {"case_id": str(cid), **dict(zip(columns, values.flatten().tolist()))}
            for cid, values in zip(case_ids, buffer)
        ]

    def aggregate(self) -> dict[str, float]:  # type: ignore[override]
        """Mean over cases of every ``f"{metric}_{class}"``.

        Raises:
            ValueError: when nothing was buffered.
        """
        buffer = self.get_buffer()
        if buffer is None or len(buffer) == 0:
            raise ValueError("SurfaceMetrics.aggregate() called before any data was added.")
        means = torch.as_tensor(buffer).mean(dim=0)  # (C, M)
        columns = self.column_names(means.shape[0])
        return dict(zip(columns, means.flatten().tolist()))



class PerChannelDice(CumulativeIterationMetric):
    """Per-case Dice of every channel with the empty-mask convention of :func:`dice` (MONAI ``Cumulative`` pattern).

    Unlike :class:`monai.metrics.DiceMetric` (``ignore_empty=True`` drops a case whose ground truth is empty from the
    mean, ``False`` scores it 0 even when the prediction is empty too), a channel empty in both prediction and ground
    truth scores 1 and a channel empty in exactly one scores 0, as in :class:`SurfaceMetrics` and the BraTS challenge
    (Bakas et al., arXiv:1811.02629), so no case drops out of the mean. Each call buffers one ``(B, C)`` float64 row
    block; :meth:`get_buffer` gathers the rows of all ranks under DDP.

    Example::

        metric = PerChannelDice(include_background=False)
        for batch in loader:
            metric(y_pred=onehot_pred, y=onehot_label)
        per_channel = metric.aggregate()  # (C - 1,) mean over cases
        metric.reset()

    Args:
        include_background: keep channel 0; ``False`` drops it (one-hot outputs whose channel 0 is background).
    """

    def __init__(self, include_background: bool = True) -> None:
        super().__init__()
        self.include_background = include_background

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """``(B, C)`` Dice of one batch (``(B, C - 1)`` without the background)."""
        if y is None:
            raise ValueError("PerChannelDice needs the ground truth y.")
        scores = dice_per_channel(y_pred, y)
        return scores if self.include_background else scores[:, 1:]

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        """Mean over cases of each channel, a ``(C,)`` float64 tensor.

        Raises:
            ValueError: when nothing was buffered.
        """
        buffer = self.get_buffer()
        if buffer is None or len(buffer) == 0:
            raise ValueError("PerChannelDice.aggregate() called before any data was added.")
        return torch.as_tensor(buffer, dtype=torch.float64).mean(dim=0)
