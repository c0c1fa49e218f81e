"""Evaluation of the chest X-ray classifier trained with the Grad-CAM attention loss (``bundles/cxr_attention_
classification``; Wu, Japkowicz, Gilbert, Corizzo, Data Mining and Knowledge Discovery 40(4):47, 2026): one figure per
test image and the localisation section of the report.

The rest of the evaluation runs on MONAI's ``SupervisedEvaluator`` with the project's handlers (see the bundle's
``configs/evaluate.yaml``): :class:`~pipelines.metrics.ClassificationMetricsHandler` and
:class:`~pipelines.evaluation.MetricsReportHandler` (accuracy, AUC, sensitivity / specificity at 0.5 and at Youden's
threshold for binary tasks, bootstrap CIs), :class:`~pipelines.metrics.attention.CAMLocalisationHandler` (mean
attention-in-region ratio and pointing-game hit rate over the disease images) with :class:`CAMLocalisationReportHandler`
(``localisation.csv`` and the ``localisation`` section) and :class:`CXRFigureHandler`.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine

from .handlers import RowsReportHandler
from .lanet import (
    EvaluationFigureHandler,
    _default_case_ids,
    _display,
    _figure,
    _probs_and_title,
    _save_png,
    _to_2d,
)

__all__ = ["CAMLocalisationReportHandler", "CXRFigureHandler", "save_cxr_figure"]


def save_cxr_figure(
    path: str,
    image: Any,
    cam: Any,
    class_names: Sequence[str],
    probs: Any,
    lung_box: Sequence[float] | None = None,
    region: Any = None,
    true_label: int | None = None,
    cam_threshold: float | None = None,
    dpi: int = 100,
    return_figure: bool = False,
):
    """Write a PNG with two panels: the radiograph with the lung box (yellow) and the class region (green contour),
    and the Grad-CAM heatmap over the radiograph (with the region contour and, when ``cam_threshold`` is given, the
    contour of ``cam > cam_threshold`` in white). The title reads ``"predicted: <class> (<prob>)"``, the true class
    when given and, for an image with a region, the attention-in-region ratio (the fraction of region pixels with
    ``cam > cam_threshold``).

    Args:
        path: output PNG (folders are created).
        image: ``(H, W)`` or ``(1, H, W)``, any range (scaled for display).
        cam: Grad-CAM ``(H, W)`` in [0, 1] (resized to the image if needed), or None.
        class_names: names indexed by class.
        probs: class probabilities ``(num_classes,)``.
        lung_box: ``[row_min, col_min, row_max, col_max]`` in the image grid (exclusive maxima), or None.
        region: the class region ``(H, W)`` in {0, 1} (all zero or None: no contour).
        true_label: the true class index, or None.
        cam_threshold: the attention threshold ``t`` (contour and ratio), or None.
        dpi: resolution (the figure is 9 x 4.8 inches).
        return_figure: return the matplotlib figure instead of writing ``path``.

    Returns:
        ``path`` (or the figure).

    Raises:
        ValueError: ``probs`` and ``class_names`` disagree in length, or an input of the wrong shape.
    """
    from matplotlib.patches import Rectangle

    img = _to_2d(image, "image")
    size = img.shape
    heat = _to_2d(cam, "cam", size)
    area = _to_2d(region, "region", size, mode="nearest")
    probs, title = _probs_and_title(probs, class_names, true_label)
    has_region = area is not None and area.max() > 0.5
    if has_region and heat is not None and cam_threshold is not None:
        ratio = float(np.mean(heat[area > 0.5] > cam_threshold))
        title += f"   attention in region: {ratio:.2f}"

    fig, axes = _figure(2, (9, 4.8), dpi)
    shown = _display(img)
    for ax in axes:
        ax.imshow(shown, cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
    if heat is not None:
        axes[1].imshow(heat, cmap="jet", vmin=0, vmax=1, alpha=0.45)
        if cam_threshold is not None and heat.max() > cam_threshold > heat.min():
            axes[1].contour(heat, levels=[cam_threshold], colors="white", linewidths=1.0)
    if lung_box is not None:
        r0, c0, r1, c1 = (float(v) for v in np.asarray(lung_box, dtype=float).reshape(4))
        # pixel (r, c) covers [c - 0.5, c + 0.5] in imshow's axes: the box corner (r0, c0) is at (c0 - 0.5, r0 - 0.5)
        axes[0].add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, edgecolor="yellow",
                                    linewidth=1.5))
    if has_region:
        for ax in axes:
            ax.contour(area, levels=[0.5], colors="lime", linewidths=1.5)
    parts = (["lung box (yellow)"] if lung_box is not None else []) + (["class region (green)"] if has_region else [])
    axes[0].set_title("image" + (": " + ", ".join(parts) if parts else ""), fontsize=9)
    axes[1].set_title("Grad-CAM (last feature stage)", fontsize=9)
    fig.suptitle(title, fontsize=11)
    if return_figure:
        return fig
    return _save_png(fig, path)


def _default_boxes(batch: Any) -> Any:
    return batch["lung_box"]


class CXRFigureHandler(EvaluationFigureHandler):
    """Writes :func:`save_cxr_figure` for every image an evaluator sees: ``<save_dir>/<case_id>.png``.

    Reads ``image``, ``pred`` (class probabilities), ``label``, ``cam`` (the Grad-CAM at image size) and ``region`` of
    the evaluator output (:class:`~pipelines.engines.cam_attention.CAMAttentionEvalStep`, ``decollate=False``) and the
    case ids and lung boxes (in the network-input grid, as the transforms map them) of ``engine.state.batch``. The
    per-image arrays are gathered under DDP and only rank 0 writes.

    Args:
        save_dir: figure folder (created).
        class_names: names indexed by class.
        cam_threshold: the attention threshold (contour and ratio in the title).
        case_id_transform: ``engine.state.batch`` -> one id per image (default ``batch["case_id"]``).
        box_transform: ``engine.state.batch`` -> lung boxes ``(B, 4)`` or None (default ``batch["lung_box"]``).
        dpi: figure resolution.
    """

    def __init__(
        self,
        save_dir: str,
        class_names: Sequence[str],
        cam_threshold: float | None = 0.5,
        case_id_transform: Callable[[Any], Sequence[str]] = _default_case_ids,
        box_transform: Callable[[Any], Any] | None = _default_boxes,
        dpi: int = 100,
    ) -> None:
        super().__init__(save_dir, class_names, case_id_transform, dpi)
        self.cam_threshold = cam_threshold
        self.box_transform = box_transform

    def batch_arrays(self, engine: Engine, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = engine.state.output
        n = image.shape[0]
        arrays = {
            "image": image, "probs": torch.as_tensor(out["pred"]).float(),
            "label": torch.as_tensor(out["label"]).reshape(-1).float(),
        }
        for key in ("cam", "region"):
            if out.get(key) is not None:
                arrays[key] = torch.as_tensor(out[key]).float()
        boxes = self.box_transform(engine.state.batch) if self.box_transform is not None else None
        if boxes is not None:
            arrays["lung_box"] = torch.as_tensor(boxes).float().reshape(n, 4).to(image.device)
        return arrays

    def save_figure(self, path: str, arrays: dict[str, torch.Tensor], i: int) -> None:
        save_cxr_figure(
            path, arrays["image"][i, 0], arrays["cam"][i] if "cam" in arrays else None, self.class_names,
            arrays["probs"][i], lung_box=arrays["lung_box"][i] if "lung_box" in arrays else None,
            region=arrays["region"][i] if "region" in arrays else None, true_label=int(arrays["label"][i]),
            cam_threshold=self.cam_threshold, dpi=self.dpi,
        )


class CAMLocalisationReportHandler(RowsReportHandler):
    """Writes the Grad-CAM localisation of the disease images when the evaluator completes: ``<save_dir>/
    localisation.csv`` (one row per image with a class region: ``case_id``, ``attention_ratio``, ``pointing_hit``)
    and the ``section`` ``{"n", "cam_threshold", "attention_ratio", "pointing_hit_rate"}`` (means) that
    :class:`~pipelines.evaluation.MetricsReportHandler` adds to ``summary.json`` / ``summary.md``.

    The values are the per-image rows ``{"case_id", "ratio", "pointing"}`` of a
    :class:`~pipelines.metrics.attention.CAMLocalisationHandler` of the evaluator (``engine.state.metric_details``,
    gathered across ranks by the metric). Only rank 0 writes.

    Args:
        save_dir: report folder.
        metric_name: name of the :class:`~pipelines.metrics.attention.CAMLocalisationHandler` in the evaluator.
        cam_threshold: the ratio's CAM threshold, recorded in the section.
        filename: CSV name.
        section_name: key in ``summary.json``.
    """

    def __init__(
        self,
        save_dir: str,
        metric_name: str,
        cam_threshold: float = 0.5,
        filename: str = "localisation.csv",
        section_name: str = "localisation",
    ) -> None:
        super().__init__(save_dir, metric_name, filename, section_name)
        self.cam_threshold = float(cam_threshold)

    def make_section(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        mean = self.means(rows, ("ratio", "pointing"))
        return {
            "n": len(rows), "cam_threshold": self.cam_threshold,
            "attention_ratio": mean["ratio"], "pointing_hit_rate": mean["pointing"],
        }

    def write_rows(self, f: Any, rows: list[dict[str, Any]]) -> None:
        writer = csv.writer(f)
        writer.writerow(["case_id", "attention_ratio", "pointing_hit"])
        writer.writerows([r["case_id"], float(r["ratio"]), float(r["pointing"])] for r in rows)

    def markdown(self) -> str:
        """The localisation table of the last run."""
        if self.section is None:
            return ""
        n = self.section["n"]
        return "\n".join([
            "## Localisation (Grad-CAM, images with a class region)", "", "| Metric | Value | n |", "|---|---|---|",
            f"| attention in region (cam > {self.cam_threshold:g}) | {self.section['attention_ratio']:.3f} | {n} |",
            f"| pointing game hit rate | {self.section['pointing_hit_rate']:.3f} | {n} |",
        ]) + "\n"
