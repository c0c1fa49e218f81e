"""Post-processing of segmentation predictions: keep the largest connected component of every class.

MONAI's :class:`monai.transforms.KeepLargestConnectedComponent` does the work; the transforms here choose its
arguments for the three layouts a segmentation output comes in, which is where it is easy to go wrong:

- ``"labels"``: a label map ``(1, *spatial)`` (argmax of a softmax network). Each foreground label is processed
  on its own (``independent=True``); label 0 is background.
- ``"onehot"``: mutually exclusive one-hot channels ``(C, *spatial)`` whose channel 0 is background (a
  discretised softmax output). Channels ``1..C-1`` are processed on their own; channel 0 is left alone.
- ``"multilabel"``: binary, possibly overlapping region channels ``(C, *spatial)`` with no background channel (a
  thresholded sigmoid output such as BraTS TC/WT/ET). *Every* channel, channel 0 included, is processed on its
  own; MONAI's default would skip channel 0 as if it were background.

Inputs must already be discrete (thresholded / argmaxed); a probability map is foreground wherever it is > 0.
To write BraTS label maps afterwards use :class:`transforms.BratsRegionsToLabelsd` on the cleaned regions.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import KeepLargestConnectedComponent, MapTransform, Transform

__all__ = ["LAYOUTS", "KeepLargestComponentPerClass", "KeepLargestComponentPerClassd"]

#: Accepted values of ``layout``.
LAYOUTS = ("labels", "onehot", "multilabel")


class KeepLargestComponentPerClass(Transform):
    """Keep the ``num_components`` largest connected components of every class, each class on its own.

    Args:
        layout: ``"labels"``, ``"onehot"`` or ``"multilabel"``; see the module docstring.
        applied_labels: classes to process: label values for ``"labels"``, channel indices otherwise. Defaults to
            every foreground label / channel of the layout.
        connectivity: maximum number of orthogonal hops between neighbours (1 = faces only); ``None`` for full
            connectivity (``img.ndim - 1``).
        num_components: how many of the largest components to keep per class.

    Raises:
        ValueError: for an unknown ``layout`` or ``num_components < 1``.
    """

    backend = KeepLargestConnectedComponent.backend

    def __init__(
        self,
        layout: str = "multilabel",
        applied_labels: Sequence[int] | int | None = None,
        connectivity: int | None = None,
        num_components: int = 1,
    ) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got layout={layout!r}.")
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got num_components={num_components}.")
        self.layout = layout
        self.applied_labels = applied_labels
        self.connectivity = connectivity
        self.num_components = num_components

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """
        Args:
            img: ``(1, *spatial)`` label map for ``"labels"``, ``(C, *spatial)`` binary channels otherwise.

        Returns:
            ``img``'s type and shape with the smaller components of every processed class set to 0.

        Raises:
            ValueError: when a label map has more than one channel, or ``"onehot"`` input has a single channel.
        """
        channels = img.shape[0]
        if self.layout == "labels" and channels != 1:
            raise ValueError(f"layout='labels' needs a (1, *spatial) label map, got shape {tuple(img.shape)}.")
        if self.layout == "onehot" and channels < 2:
            raise ValueError(f"layout='onehot' needs a background and >= 1 class channel, got {tuple(img.shape)}.")
        applied = self.applied_labels
        if applied is None and self.layout == "multilabel":
            applied = tuple(range(channels))  # no background channel: every channel is a class
        keep = KeepLargestConnectedComponent(
            applied_labels=applied,
            is_onehot=self.layout != "labels",
            independent=True,
            connectivity=self.connectivity,
            num_components=self.num_components,
        )
        return keep(img)


class KeepLargestComponentPerClassd(MapTransform):
    """Dictionary wrapper of :class:`KeepLargestComponentPerClass`.

    Args:
        keys: keys of the predictions to clean.
        layout: see :class:`KeepLargestComponentPerClass`.
        applied_labels: see :class:`KeepLargestComponentPerClass`.
        connectivity: see :class:`KeepLargestComponentPerClass`.
        num_components: see :class:`KeepLargestComponentPerClass`.
        allow_missing_keys: don't raise for missing keys.
    """

    backend = KeepLargestComponentPerClass.backend

    def __init__(
        self,
        keys: KeysCollection,
        layout: str = "multilabel",
        applied_labels: Sequence[int] | int | None = None,
        connectivity: int | None = None,
        num_components: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.keeper = KeepLargestComponentPerClass(layout, applied_labels, connectivity, num_components)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.keeper(d[key])
        return d
