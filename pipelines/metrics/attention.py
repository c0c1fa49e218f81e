"""How well a Grad-CAM falls into the class region (Wu, Japkowicz, Gilbert, Corizzo, Data Mining and Knowledge
Discovery 40(4):47, 2026).

* :func:`attention_in_region_ratio`: the paper's ratio, the fraction of the region's pixels where the normalised
  CAM exceeds the threshold (``cam > threshold``);
* :func:`pointing_game_hits`: whether the CAM's maximum (first maximum in row-major order) lies inside the region
  (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016); a CAM without a positive value
  is a miss;
* :class:`CAMLocalisationMetrics`: a MONAI ``Cumulative`` metric of both, over the images whose region is not empty
  (the disease images; No Finding has no region), gathered across ranks under DDP;
* :class:`CAMLocalisationHandler`: the ignite handler beside it.

CAMs of another size than the region are resized bilinearly (``align_corners=False``) to the region's size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .localisation import FlaggedRowsHandler, FlaggedRowsMetric

__all__ = [
    "CAM_LOCALISATION_METRICS",
    "CAMLocalisationHandler",
    "CAMLocalisationMetrics",
    "attention_in_region_ratio",
    "pointing_game_hits",
]

#: ``kind`` values of :class:`CAMLocalisationHandler`.
CAM_LOCALISATION_METRICS = ("ratio", "pointing")


def _cam_and_region(cam: torch.Tensor, region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cam (B, N), region (B, N) bool)`` flattened on the region's grid."""
    cam, region = torch.as_tensor(cam).detach().float(), torch.as_tensor(region).detach()
    if hasattr(cam, "as_tensor"):
        cam = cam.as_tensor()
    if hasattr(region, "as_tensor"):
        region = region.as_tensor()
    if region.ndim < 3 or region.shape[1] != 1:
        raise ValueError(f"region must be (B, 1, *spatial) masks, got {tuple(region.shape)}.")
    if cam.ndim == region.ndim - 1:
        cam = cam[:, None]
    if cam.ndim != region.ndim or cam.shape[1] != 1 or cam.shape[0] != region.shape[0]:
        raise ValueError(
            f"cam {tuple(cam.shape)} does not fit region {tuple(region.shape)}; expected (B, 1, *spatial)."
        )
    if cam.shape[2:] != region.shape[2:]:
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[region.ndim - 2]
        cam = F.interpolate(cam, size=region.shape[2:], mode=mode, align_corners=False)
    return cam.flatten(1).cpu(), (region.flatten(1) > 0.5).cpu()


def attention_in_region_ratio(cam: torch.Tensor, region: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Fraction of each region's pixels where ``cam > threshold`` (the paper's ratio; ``1 - L_att`` of the hard
    attention loss).

    Args:
        cam: normalised CAMs ``(B, *spatial)`` or ``(B, 1, *spatial)``.
        region: class-region masks ``(B, 1, *spatial)`` (> 0.5 is inside).
        threshold: CAM threshold.

    Returns:
        ``(B,)`` float64, NaN for an empty region.
    """
    cam, region = _cam_and_region(cam, region)
    area = region.sum(1).double()
    inside = ((cam > threshold) & region).sum(1).double()
    return torch.where(area > 0, inside / area.clamp_min(1), torch.full_like(area, float("nan")))


def pointing_game_hits(cam: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Whether the maximum of each CAM lies inside its region (pointing game).

    The maximum is the first one in row-major order; a CAM with no positive value (nothing highlighted) is a miss.

    Args:
        cam: CAMs ``(B, *spatial)`` or ``(B, 1, *spatial)``.
        region: class-region masks ``(B, 1, *spatial)``.

    Returns:
        ``(B,)`` float64 of 1 (hit) / 0 (miss), NaN for an empty region.
    """
    cam, region = _cam_and_region(cam, region)
    peak = cam.argmax(dim=1, keepdim=True)
    hit = region.gather(1, peak)[:, 0] & (cam.amax(dim=1) > 0)
    return torch.where(region.any(1), hit.double(), torch.full(hit.shape, float("nan"), dtype=torch.float64))


class CAMLocalisationMetrics(FlaggedRowsMetric):
    """Attention-in-region ratio and pointing game over the images with a non-empty region.

    Each call adds one row per image, ``(has_region, ratio, hit)`` as float64 (0 for ratio and hit without a
    region); :meth:`get_buffer` gathers the rows of all ranks under DDP.

    Example::

        metric = CAMLocalisationMetrics(threshold=0.5)
        for batch in loader:
            metric(y_pred=cam, y=region)
        metric.aggregate()  # {"ratio": ..., "pointing": ..., "n": ...}

    Args:
        threshold: CAM threshold of the ratio.
    """

    value_names = CAM_LOCALISATION_METRICS

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = float(threshold)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """Rows ``(B, 3)`` of one batch: ``y_pred`` the CAMs, ``y`` the regions ``(B, 1, *spatial)``."""
        if y is None:
            raise ValueError("CAMLocalisationMetrics needs the class regions y.")
        ratio = attention_in_region_ratio(y_pred, y, self.threshold)
        hits = pointing_game_hits(y_pred, y)
        has = (~torch.isnan(ratio)).double()
        return torch.stack([has, torch.nan_to_num(ratio), torch.nan_to_num(hits)], dim=1)


def _cam_output(output: Any) -> tuple[Any, Any]:
    """``(cam, region)`` of a :class:`~pipelines.engines.cam_attention.CAMAttentionEvalStep` output."""
    return output["cam"], output["region"]


class CAMLocalisationHandler(FlaggedRowsHandler):
    """Mean attention-in-region ratio (or pointing-game accuracy) over the disease images, as an ignite metric.

    Wraps :class:`CAMLocalisationMetrics` (gathered across ranks under DDP). After each run
    ``engine.state.metrics[name]`` holds the ``kind`` mean and ``engine.state.metric_details[name]`` the per-image
    rows ``{"case_id", "ratio", "pointing"}`` of the images with a region. A batch without CAMs or regions adds
    nothing.

    Args:
        kind: ``"ratio"`` or ``"pointing"``, the reported mean.
        threshold: CAM threshold of the ratio (0.5 in the paper).
        output_transform: ``engine.state.output`` -> ``(cam (B, 1, H, W), region (B, 1, H, W))``; the default reads
            ``"cam"`` and ``"region"`` of :class:`~pipelines.engines.cam_attention.CAMAttentionEvalStep`
            (an evaluator built with ``decollate=False``).
        case_id_transform: ``engine.state.batch`` -> one id per image.
        save_details: keep the per-image rows in ``engine.state.metric_details[name]``.
    """

    def __init__(
        self,
        kind: str = "ratio",
        threshold: float = 0.5,
        output_transform: Callable = _cam_output,
        case_id_transform: Callable | None = None,
        save_details: bool = True,
    ) -> None:
        self.threshold = float(threshold)
        super().__init__(CAMLocalisationMetrics(threshold), kind, output_transform, case_id_transform, save_details)

    def update(self, output: Sequence[Any]) -> None:
        if len(output) != 2:
            raise ValueError(f"output_transform must give (cam, region), got {len(output)} items.")
        cam, region = output
        if cam is None or region is None:
            return
        self.metric_fn(cam, torch.as_tensor(region))
        self._record_case_ids(cam, len(cam))
