"""TensorBoard pictures and scalars the bundles need beyond MONAI's: image slices with mask overlays (3D
segmentation), LA-Net's image / mask / Grad-CAM grid, the learning rate.

The pictures share one base, :class:`EpochPictureHandler` (a MONAI ``TensorBoardHandler``): the writer (on rank 0
only under ``torch.distributed``), one picture per evaluator run from its first iteration, step = epoch (the
trainer's epoch under MONAI's ``ValidationHandler``). A new panel subclasses it and overrides
:meth:`EpochPictureHandler.make_engine_picture`.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Mapping

import ignite.distributed as idist
import numpy as np
import torch
import torch.nn as nn
from ignite.engine import Engine, Events
from monai.handlers.tensorboard_handlers import TensorBoardHandler
from torch.utils.tensorboard import SummaryWriter

from ..evaluation.saliency import grad_cam
from ..metrics.localisation import upsample_mask

__all__ = ['CAMTensorBoardHandler', 'EpochPictureHandler', 'LANetTensorBoardHandler', 'OptimizerParamsLogger', 'OutputPictureHandler', 'TensorBoardSliceHandler', 'overlay_rgb']


_PALETTE = np.array(
    [[0.9, 0.2, 0.2], [0.2, 0.8, 0.2], [1.0, 0.85, 0.1], [0.2, 0.5, 1.0], [0.9, 0.3, 0.9], [0.1, 0.9, 0.9],
     [1.0, 0.6, 0.2], [0.6, 0.4, 0.2], [0.6, 0.6, 1.0], [0.5, 1.0, 0.5], [1.0, 0.5, 0.5]],
    dtype=np.float32,
)


def overlay_rgb(image: np.ndarray, masks: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Colour binary masks onto a grayscale slice.

    Masks are drawn largest first so nested regions (e.g. ET inside TC inside WT) stay visible.

    Args:
        image: ``(H, W)`` grayscale slice, any range (min-max normalised here).
        masks: ``(K, H, W)`` binary masks, one colour each.
        alpha: opacity of the colours.

    Returns:
        ``(3, H, W)`` float32 RGB in [0, 1].
    """
    img = image.astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    rgb = np.repeat(img[None], 3, axis=0)
    masks = masks > 0.5
    for k in sorted(range(masks.shape[0]), key=lambda i: -int(masks[i].sum())):
        colour = _PALETTE[k % len(_PALETTE)][:, None]
        sel = masks[k]
        rgb[:, sel] = (1 - alpha) * rgb[:, sel] + alpha * colour
    return np.clip(rgb, 0.0, 1.0)


class EpochPictureHandler(TensorBoardHandler, metaclass=ABCMeta):
    """Base of the TensorBoard picture panels: one image per evaluator run, from its first iteration.

    Attach to an evaluator (``val_handlers``). At the first ``ITERATION_COMPLETED`` of each run (``EPOCH_STARTED``
    re-arms it) :meth:`make_engine_picture` builds a float RGB ``(3, H, W)`` picture in [0, 1] from the engine,
    which is written under ``tag`` with step ``engine.state.epoch`` (the trainer's epoch under MONAI's
    ``ValidationHandler``). Under ``torch.distributed`` only rank 0 creates a writer and draws (other ranks do
    nothing, so a picture that runs the network, e.g. Grad-CAM, costs them nothing).

    Subclasses override :meth:`make_engine_picture` only.

    Args:
        log_dir: TensorBoard folder (a ``SummaryWriter`` is created on rank 0) unless ``summary_writer`` is given.
        summary_writer: an existing writer to reuse (not closed by :meth:`close`).
        tag: image tag in TensorBoard.
    """

    def __init__(self, log_dir: str = "./runs", summary_writer: SummaryWriter | None = None, tag: str = "picture"):
        self.rank = idist.get_rank()
        if self.rank == 0:
            super().__init__(summary_writer=summary_writer, log_dir=log_dir)
        else:
            self._writer, self.internal_writer = None, False
        self.tag = tag
        self._done = False

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._done = False

    @abstractmethod
    def make_engine_picture(self, engine: Engine) -> np.ndarray | None:
        """The picture of this run from ``engine.state`` (``output``, ``batch``) and the engine (``network``):
        float ``(3, H, W)`` in [0, 1], or None to write nothing this time (the hook every subclass overrides)."""

    def __call__(self, engine: Engine) -> None:
        if self._done or self._writer is None:
            return
        self._done = True
        picture = self.make_engine_picture(engine)
        if picture is None:
            return
        self._writer.add_image(self.tag, picture, global_step=engine.state.epoch)
        self._writer.flush()


class TensorBoardSliceHandler(EpochPictureHandler):
    """Writes one picture per validation run: each input channel, then label and prediction overlays.

    The slice is taken along ``slice_axis`` (axial for NIfTI loaded as ``(C, X, Y, Z)``) where the label has the most
    foreground, from the first item of the first batch. Attach to an evaluator; see :class:`EpochPictureHandler`.

    Args:
        log_dir: TensorBoard folder (a ``SummaryWriter`` is created) unless ``summary_writer`` is given.
        summary_writer: an existing writer to reuse.
        tag: image tag in TensorBoard.
        slice_axis: spatial axis to slice (negative counts from the end).
        image_key / label_key / pred_key: keys in each decollated output item.
        label_background: skip channel 0 of label/pred when it is a one-hot background channel.
    """

    def __init__(
        self,
        log_dir: str = "./runs",
        summary_writer: SummaryWriter | None = None,
        tag: str = "val_slices",
        slice_axis: int = -1,
        image_key: str = "image",
        label_key: str = "label",
        pred_key: str = "pred",
        label_background: bool = False,
    ) -> None:
        super().__init__(log_dir=log_dir, summary_writer=summary_writer, tag=tag)
        self.slice_axis = slice_axis
        self.keys = (image_key, label_key, pred_key)
        self.label_background = label_background

    @staticmethod
    def _np(x) -> np.ndarray:
        return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)

    def make_picture(self, image, label, pred) -> np.ndarray:
        """Build the ``(3, H, W * (C + 2))`` picture for one item (channel-first arrays)."""
        image, label, pred = self._np(image), self._np(label), self._np(pred)
        if self.label_background:
            label, pred = label[1:], pred[1:]
        spatial_axis = self.slice_axis % (image.ndim - 1)
        if image.ndim == 4:  # 3D: choose the slice with the most labelled voxels
            sums = label.sum(axis=tuple(a for a in range(label.ndim) if a != spatial_axis + 1))
            index = int(np.argmax(sums)) if sums.max() > 0 else image.shape[spatial_axis + 1] // 2
            take = lambda a: np.take(a, index, axis=spatial_axis + 1)  # noqa: E731
            image, label, pred = take(image), take(label), take(pred)
        tiles = [overlay_rgb(ch, np.zeros((0, *ch.shape))) for ch in image]
        tiles.append(overlay_rgb(image[-1], label))
        tiles.append(overlay_rgb(image[-1], pred))
        return np.concatenate(tiles, axis=2)

    def make_engine_picture(self, engine: Engine) -> np.ndarray:
        output = engine.state.output
        item = output[0] if isinstance(output, (list, tuple)) else output
        image, label, pred = (item[k] for k in self.keys)
        if isinstance(image, torch.Tensor) and image.ndim == label.ndim + 1:  # batched, not decollated
            image, label, pred = image[0], label[0], pred[0]
        return self.make_picture(image, label, pred)


class OptimizerParamsLogger:
    """Ignite's :class:`~ignite.handlers.tensorboard_logger.OptimizerParamsHandler` on its own
    :class:`~ignite.handlers.tensorboard_logger.TensorboardLogger`, attachable like a MONAI handler.

    Logs ``param_name`` of every parameter group as ``[tag/]<param_name>/group_<i>`` (``lr/group_0`` by default) at
    every epoch end, step = the epoch (so a resumed run continues the curve), and flushes each time. The writer is
    created on :meth:`attach` (in ``log_dir``, next to MONAI's ``TensorBoardStatsHandler`` event file) and closed when
    the run completes.

    Args:
        optimizer: the optimizer whose parameter groups are logged.
        log_dir: TensorBoard folder.
        param_name: the parameter group entry, ``"lr"`` for the learning rate.
        tag: optional prefix of the scalar names.
    """

    def __init__(self, optimizer, log_dir: str, param_name: str = "lr", tag: str | None = None) -> None:
        self.optimizer = optimizer
        self.log_dir = log_dir
        self.param_name = param_name
        self.tag = tag
        self.logger = None

    def attach(self, engine) -> None:
        from ignite.engine import Events
        from ignite.handlers.tensorboard_logger import (
            OptimizerParamsHandler,
            TensorboardLogger,
        )

        self.logger = TensorboardLogger(log_dir=self.log_dir)
        self.logger.attach(
            engine,
            log_handler=OptimizerParamsHandler(self.optimizer, param_name=self.param_name, tag=self.tag),
            event_name=Events.EPOCH_COMPLETED,
        )
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda _: self.logger.writer.flush())
        engine.add_event_handler(Events.COMPLETED, lambda _: self.logger.close())


def _gray_rgb(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.repeat(x[None], 3, axis=0)


def _heat_rgb(x: np.ndarray) -> np.ndarray:
    """A blue -> red colour map of values in [0, 1] (no matplotlib needed)."""
    x = np.clip(x, 0, 1)
    return np.stack([x, 1 - np.abs(2 * x - 1), 1 - x])


class LANetTensorBoardHandler(EpochPictureHandler):
    """Each validation run, one TensorBoard picture per row of the first ``num_images`` images of the first batch:
    input, ground-truth mask, predicted mask (upsampled bilinearly to the image) and Grad-CAM on ``target_layer``.

    Attach to the evaluator; see :class:`EpochPictureHandler`. Grad-CAM runs on rank 0's replica of the network
    (through a ``DistributedDataParallel`` wrapper, see :func:`pipelines.evaluation.saliency.grad_cam`).

    Args:
        log_dir: TensorBoard folder.
        num_images: rows of the grid.
        target_layer: Grad-CAM layer (see :func:`pipelines.evaluation.saliency.grad_cam`); None skips Grad-CAM.
        tag: image tag.
        summary_writer: an existing writer to reuse instead of creating one in ``log_dir``.
    """

    def __init__(self, log_dir: str = "./runs", num_images: int = 4, target_layer: str | None = "backbone.layer4",
                 tag: str = "val_lanet", summary_writer: SummaryWriter | None = None) -> None:
        super().__init__(log_dir=log_dir, summary_writer=summary_writer, tag=tag)
        self.num_images, self.target_layer = int(num_images), target_layer

    def make_picture(self, network: nn.Module, output: Mapping) -> np.ndarray:
        """Float RGB picture in [0, 1], ``(3, n * H, k * W)`` for ``n = min(num_images, batch)`` rows of ``H x W``
        images and ``k`` panels: input, ground-truth mask, predicted mask (black when ``output`` has no
        ``mask_prob``) and, unless ``target_layer`` is None, Grad-CAM over the input."""
        n = min(self.num_images, output["image"].shape[0])
        images = output["image"][:n]
        size = images.shape[2:]
        pred = upsample_mask(output["mask_prob"][:n], size) if output.get("mask_prob") is not None else None
        cam = grad_cam(network, images, target_layer=self.target_layer) if self.target_layer else None
        rows = []
        for i in range(n):
            img = images[i, 0].detach().cpu().float().numpy()
            tiles = [_gray_rgb(img), _heat_rgb(output["mask"][i, 0].detach().cpu().float().numpy())]
            tiles.append(_heat_rgb(pred[i, 0].cpu().numpy()) if pred is not None else np.zeros_like(tiles[0]))
            if cam is not None:
                tiles.append(0.5 * _gray_rgb(img) + 0.5 * _heat_rgb(cam[i, 0].cpu().numpy()))
            rows.append(np.concatenate(tiles, axis=2))
        return np.concatenate(rows, axis=1).astype(np.float32)

    def make_engine_picture(self, engine: Engine) -> np.ndarray:
        return self.make_picture(engine.network, engine.state.output)


class OutputPictureHandler(EpochPictureHandler):
    """Base of the panels drawn from the evaluator output alone (no network): one row of tiles per image for the
    first ``num_images`` images of the first batch. Subclasses implement :meth:`row_tiles`.

    Args:
        log_dir: TensorBoard folder.
        num_images: rows of the grid.
        tag: image tag; default the class's :attr:`default_tag`.
        summary_writer: an existing writer to reuse instead of creating one in ``log_dir``.
    """

    #: the image tag when none is given.
    default_tag: str = "picture"

    def __init__(self, log_dir: str = "./runs", num_images: int = 4, tag: str | None = None,
                 summary_writer: SummaryWriter | None = None) -> None:
        super().__init__(log_dir=log_dir, summary_writer=summary_writer, tag=self.default_tag if tag is None else tag)
        self.num_images = int(num_images)

    @abstractmethod
    def row_tiles(self, output: Mapping, i: int, img: np.ndarray) -> list[np.ndarray]:
        """The RGB tiles ``(3, H, W)`` of image ``i`` of ``output`` (``img`` its first channel as float numpy)."""

    def make_picture(self, output: Mapping) -> np.ndarray:
        """Float RGB picture in [0, 1], ``(3, n * H, k * W)`` for ``n = min(num_images, batch)`` rows of the ``k``
        tiles of :meth:`row_tiles`."""
        n = min(self.num_images, output["image"].shape[0])
        rows = []
        for i in range(n):
            img = output["image"][i, 0].detach().cpu().float().numpy()
            rows.append(np.concatenate(self.row_tiles(output, i, img), axis=2))
        return np.concatenate(rows, axis=1).astype(np.float32)

    def make_engine_picture(self, engine: Engine) -> np.ndarray:
        return self.make_picture(engine.state.output)


class CAMTensorBoardHandler(OutputPictureHandler):
    """Each validation run, one TensorBoard picture of the first ``num_images`` images of the first batch, one row
    per image: the input, its class region over it (green; empty for No Finding) and the Grad-CAM over it.

    Reads ``image``, ``region`` and ``cam`` of the evaluator output
    (:class:`~pipelines.engines.cam_attention.CAMAttentionEvalStep` with ``decollate=False``: the CAM is already
    computed, so the picture runs no network). Attach to the evaluator; see :class:`EpochPictureHandler`.

    Arguments as :class:`OutputPictureHandler`; the default ``tag`` is ``"val_cam"``.
    """

    default_tag = "val_cam"

    def row_tiles(self, output: Mapping, i: int, img: np.ndarray) -> list[np.ndarray]:
        """Input, region overlay, Grad-CAM over the input (black when ``output`` has no ``cam``)."""
        region = output.get("region")
        mask = region[i, 0].detach().cpu().float().numpy() if region is not None else np.zeros_like(img)
        # palette colour 1 (green): an empty mask in channel 0
        tiles = [_gray_rgb(img), overlay_rgb(img, np.stack([np.zeros_like(mask), mask]), alpha=0.4)]
        cam = output.get("cam")
        if cam is not None:
            tiles.append(0.5 * _gray_rgb(img) + 0.5 * _heat_rgb(cam[i, 0].detach().cpu().float().numpy()))
        else:
            tiles.append(np.zeros_like(tiles[0]))
        return tiles


class JointSegClsTensorBoardHandler(OutputPictureHandler):
    """Each validation run, one TensorBoard picture of the first ``num_images`` images of the first batch, one row
    per image: the input, the ground-truth mask over it (green; empty for a normal image) and the predicted mask over
    it (red).

    Reads ``image``, ``mask`` (ground truth) and ``seg`` (binarised prediction) of the evaluator output
    (:class:`~pipelines.engines.joint_segcls.JointSegClsEvalStep` with ``decollate=False``; the picture runs no
    network). Attach to the evaluator; see :class:`EpochPictureHandler`.

    Arguments as :class:`OutputPictureHandler`; the default ``tag`` is ``"val_segcls"``.
    """

    default_tag = "val_segcls"

    def row_tiles(self, output: Mapping, i: int, img: np.ndarray) -> list[np.ndarray]:
        """Input, ground-truth overlay (palette colour 1, green), prediction overlay (colour 0, red)."""
        truth = output["mask"][i, 0].detach().cpu().float().numpy()
        pred = output["seg"][i, 0].detach().cpu().float().numpy()
        empty = np.zeros_like(img)
        return [_gray_rgb(img), overlay_rgb(img, np.stack([empty, truth]), alpha=0.4),
                overlay_rgb(img, pred[None], alpha=0.4)]


__all__ += ["JointSegClsTensorBoardHandler"]


def _draw_boxes(rgb: np.ndarray, boxes, colour: np.ndarray, width: int = 1) -> np.ndarray:
    """Outline standard-mode boxes ``[r0, c0, r1, c1]`` (pixel corners, exclusive maxima) on an RGB ``(3, H, W)``
    picture in place, clipped to it; returns it."""
    height, wid = rgb.shape[1:]
    colour = np.asarray(colour, dtype=rgb.dtype)[:, None]
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        r0, c0 = (int(np.clip(np.floor(v), 0, n - 1)) for v, n in zip(box[:2], (height, wid)))
        r1, c1 = (int(np.clip(np.ceil(v) - 1, 0, n - 1)) for v, n in zip(box[2:], (height, wid)))
        if r1 < r0 or c1 < c0:
            continue
        for t in range(width):
            rgb[:, min(r0 + t, r1), c0 : c1 + 1] = colour
            rgb[:, max(r1 - t, r0), c0 : c1 + 1] = colour
            rgb[:, r0 : r1 + 1, min(c0 + t, c1)] = colour
            rgb[:, r0 : r1 + 1, max(c1 - t, c0)] = colour
    return rgb


class DetectionTensorBoardHandler(OutputPictureHandler):
    """Each validation run, one TensorBoard picture of the first ``num_images`` images of the first batch, one row
    per image: the input with the truth boxes (green) and the input with the predicted boxes (red) of score
    ``>= score_threshold``, at most ``max_boxes`` of them (highest scores).

    Reads ``image``, ``box`` and ``pred_box`` / ``pred_score`` (per-image lists, network grid) of the evaluator
    output (:class:`~pipelines.engines.detection.DetectionEvalStep` with ``decollate=False``; the picture runs no
    network). Attach to the evaluator; see :class:`EpochPictureHandler`.

    Args:
        log_dir, num_images, tag, summary_writer: as :class:`OutputPictureHandler`; the default ``tag`` is
            ``"val_boxes"``.
        score_threshold: smallest score of a drawn prediction (the seed's cutoff 0.45 by default).
        max_boxes: most predictions drawn per image.
    """

    default_tag = "val_boxes"

    def __init__(self, log_dir: str = "./runs", num_images: int = 4, tag: str | None = None,
                 summary_writer: SummaryWriter | None = None, score_threshold: float = 0.45,
                 max_boxes: int = 5) -> None:
        super().__init__(log_dir=log_dir, num_images=num_images, tag=tag, summary_writer=summary_writer)
        self.score_threshold, self.max_boxes = float(score_threshold), int(max_boxes)

    @staticmethod
    def _np(x) -> np.ndarray:
        return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)

    def row_tiles(self, output: Mapping, i: int, img: np.ndarray) -> list[np.ndarray]:
        """Truth boxes (palette colour 1, green) and the kept predictions (colour 0, red) over the input."""
        boxes, scores = self._np(output["pred_box"][i]).reshape(-1, 4), self._np(output["pred_score"][i]).reshape(-1)
        keep = np.argsort(-scores, kind="stable")[: self.max_boxes]
        keep = keep[scores[keep] >= self.score_threshold]
        truth = _draw_boxes(_gray_rgb(img), self._np(output["box"][i]), _PALETTE[1])
        return [truth, _draw_boxes(_gray_rgb(img), boxes[keep], _PALETTE[0])]


__all__ += ["DetectionTensorBoardHandler"]
