"""Folder prediction of the chest X-ray classifier trained with the Grad-CAM attention loss
(``bundles/cxr_attention_classification``): class probabilities of every radiograph and, optionally, a Grad-CAM
figure per image.

:class:`CXRPredictor` is the shared :class:`~pipelines.predictors.FolderPredictor` with the bundle's pre-processing
(:func:`transforms.recipes.cxr_classification_image_transforms`: resize to the training size, [0, 1], mean/std 0.5)
and one hook overridden, :meth:`~CXRPredictor.save_figure`: the Grad-CAM of the predicted class on the network's
``cam_layer``, computed as in the evaluation (:func:`pipelines.losses.cam_attention.grad_cam_maps`, normalised by
its maximum) and mapped back onto the original image by inverting the resize.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from monai.transforms import InvertibleTransform

from transforms import recipes

from ..engines.cam_attention import cam_features_and_logits
from ..losses.cam_attention import grad_cam_maps
from .folder import FolderPredictor

__all__ = ["CXRPredictor"]


class CXRPredictor(FolderPredictor):
    """:class:`~pipelines.predictors.FolderPredictor` of the chest X-ray attention classifier.

    Writes ``<pred_dir>/predictions.csv`` (``file``, ``prob_<class>`` ..., ``prediction``, ``status``, ``error``) and,
    with ``save_figures``, ``<pred_dir>/figures/<name>.png``: the radiograph at its own size and the Grad-CAM of the
    predicted class over it (contour at ``cam_threshold``), titled with the prediction.

    Args:
        network: the bundle's network (a :class:`~networks.nets.cam_classifier.CAMClassifier`).
        class_names: names indexed by class (class 0 No Finding).
        image_size: network input size of the default ``preprocessing``.
        preprocessing: the image pre-processing; default
            :func:`transforms.recipes.cxr_classification_image_transforms` (``image_size``).
        cam_layer: the Grad-CAM layer; default the network's ``cam_layer`` attribute.
        cam_threshold: the attention threshold drawn on the figures.
        save_figures: write the figures.
        kwargs: ``ckpt_path``, ``device``, ``image_key`` of :class:`~pipelines.predictors.FolderPredictor`.
    """

    def __init__(
        self,
        network: nn.Module,
        class_names: Sequence[str],
        image_size: int = 224,
        preprocessing: InvertibleTransform | None = None,
        cam_layer: str | None = None,
        cam_threshold: float = 0.5,
        save_figures: bool = True,
        **kwargs: Any,
    ) -> None:
        image_key = kwargs.get("image_key", "image")
        if preprocessing is None:
            preprocessing = recipes.cxr_classification_image_transforms(image_size, image_key)
        super().__init__(network, class_names, preprocessing=preprocessing, image_size=image_size,
                         save_figures=save_figures, target_layer=cam_layer, **kwargs)
        self.cam_layer = cam_layer
        self.cam_threshold = float(cam_threshold)

    def cam(self, data: Mapping[str, Any]) -> torch.Tensor:
        """Grad-CAM ``(1, H, W)`` of the predicted class in the original image's frame, in [0, 1]."""
        x = self.network_input(data)
        with torch.no_grad():
            features, logits = cam_features_and_logits(self.network, x, self.cam_layer, detach_features=True)
        with torch.enable_grad():
            cam = grad_cam_maps(features, logits, logits.detach().argmax(1), create_graph=False, size=x.shape[2:])
        return self.to_original_frame(cam.detach()[:1], data).clamp(0, 1)

    def save_figure(self, path: str, data: Mapping[str, Any], probs: torch.Tensor) -> None:
        """The radiograph and its Grad-CAM (:meth:`cam`), :func:`pipelines.evaluation.cxr.save_cxr_figure`."""
        from ..evaluation.cxr import save_cxr_figure

        save_cxr_figure(path, data["original"], self.cam(data), self.class_names, probs.numpy(),
                        cam_threshold=self.cam_threshold)
