"""Ignite handlers the bundles need beyond MONAI's: per-channel Dice, image slices and learning rate in TensorBoard."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import IgniteMetricHandler
from monai.metrics import DiceMetric
from torch.utils.tensorboard import SummaryWriter

__all__ = ["PerChannelMeanDice", "TensorBoardSliceHandler", "LearningRateLogger", "foreground_output_transform", "overlay_rgb"]


class PerChannelMeanDice(IgniteMetricHandler):
    """Mean Dice over channels (the key metric) that also reports each channel under its own name.

    ``engine.state.metrics[name]`` holds the mean over ``channel_names``; ``engine.state.metrics[f"{name}_{c}"]``
    holds each channel's mean over cases, so TensorBoard and the console show e.g. ``val_mean_dice_TC``.
    Channels are all channels of the prediction (set ``include_background`` for one-hot outputs with background).

    Args:
        channel_names: one name per reported channel, e.g. ``("TC", "WT", "ET")``.
        include_background: passed to :class:`~monai.metrics.DiceMetric` (keep channel 0 or not).
        ignore_empty: passed to :class:`~monai.metrics.DiceMetric`: skip cases whose ground truth is empty.
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``.
        save_details: keep per-case scores in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        channel_names: Sequence[str],
        include_background: bool = True,
        ignore_empty: bool = True,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        self.channel_names = tuple(channel_names)
        metric_fn = DiceMetric(include_background=include_background, reduction="mean_batch", ignore_empty=ignore_empty)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)

    def compute(self) -> float:
        per_channel = self.metric_fn.aggregate()
        per_channel = torch.as_tensor(per_channel).flatten()
        if per_channel.numel() != len(self.channel_names):
            raise ValueError(
                f"Dice has {per_channel.numel()} channels but {len(self.channel_names)} channel names were given: "
                f"{self.channel_names}."
            )
        if self.save_details:
            if self._engine is None or self._name is None:
                raise RuntimeError("call attach() before compute().")
            self._engine.state.metric_details[self._name] = self.metric_fn.get_buffer()
        if self._engine is not None and self._name is not None:
            for name, value in zip(self.channel_names, per_channel.tolist()):
                self._engine.state.metrics[f"{self._name}_{name}"] = value
        self._is_reduced = True
        return float(torch.nanmean(per_channel).item())


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


class TensorBoardSliceHandler:
    """Writes one picture per validation run: each input channel, then label and prediction overlays.

    The slice is taken along ``slice_axis`` (axial for NIfTI loaded as ``(C, X, Y, Z)``) where the label has the most
    foreground, from the first item of the first batch. Attach to an evaluator; the step is ``engine.state.epoch``,
    which MONAI's ``ValidationHandler`` sets to the trainer's epoch.

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
        self._writer = summary_writer if summary_writer is not None else SummaryWriter(log_dir=log_dir)
        self.tag = tag
        self.slice_axis = slice_axis
        self.keys = (image_key, label_key, pred_key)
        self.label_background = label_background
        self._done = False

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._done = False

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

    def __call__(self, engine: Engine) -> None:
        if self._done:
            return
        output = engine.state.output
        item = output[0] if isinstance(output, (list, tuple)) else output
        image, label, pred = (item[k] for k in self.keys)
        if isinstance(image, torch.Tensor) and image.ndim == label.ndim + 1:  # batched, not decollated
            image, label, pred = image[0], label[0], pred[0]
        picture = self.make_picture(image, label, pred)
        self._writer.add_image(self.tag, picture, global_step=engine.state.epoch)
        self._writer.flush()
        self._done = True


class LearningRateLogger:
    """Logs the optimizer's learning rate (first parameter group) to TensorBoard at every epoch end.

    Args:
        optimizer: the optimizer whose ``param_groups[0]["lr"]`` is logged.
        log_dir: TensorBoard folder unless ``summary_writer`` is given.
        summary_writer: an existing writer to reuse.
        tag: scalar tag.
    """

    def __init__(self, optimizer, log_dir: str = "./runs", summary_writer: SummaryWriter | None = None, tag: str = "lr"):
        self.optimizer = optimizer
        self._writer = summary_writer if summary_writer is not None else SummaryWriter(log_dir=log_dir)
        self.tag = tag

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self._writer.add_scalar(self.tag, self.optimizer.param_groups[0]["lr"], engine.state.epoch)
        self._writer.flush()


def foreground_output_transform(pred_key: str = "pred", label_key: str = "label") -> Callable:
    """``output_transform`` that drops channel 0 (background) of one-hot predictions and labels.

    For softmax bundles whose metrics are reported over the foreground classes only. Works on MONAI's decollated
    evaluator output (a list of per-item dicts); slicing keeps each MetaTensor's affine (needed for the spacing).
    """

    def _transform(output) -> tuple[list, list]:
        items = output if isinstance(output, (list, tuple)) else [output]
        return [item[pred_key][1:] for item in items], [item[label_key][1:] for item in items]

    return _transform
