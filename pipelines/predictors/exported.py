"""Run a bundle's inference from its exported network instead of ``network_def`` + ``model.pt``.

``python -m monai.bundle ckpt_export`` writes TorchScript (``model.ts``), ``python -m monai.bundle onnx_export`` ONNX
(``model.onnx``). :func:`load_exported_network` turns either file into a :class:`torch.nn.Module` whose outputs are
the eager network's (a tensor, or a dict such as LA-Net's ``{"logits", "mask"}``), so the bundle's predictors and
evaluators use it unchanged; :func:`select_network` is the switch the inference configs call
(``--exported_model <file>``). An exported file carries its weights: the bundle's ``ckpt_path`` is not read for it
(:func:`is_exported_network`).

ONNX files run in `onnxruntime <https://onnxruntime.ai>`_ (CPU unless other providers are given); ONNX keeps the
input shape the file was exported with (``onnx_export --input_shape``), TorchScript takes any shape the network does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

__all__ = ["EXPORT_EXTENSIONS", "OnnxNetwork", "detection_network", "is_exported_network", "load_exported_network",
           "select_network"]

logger = logging.getLogger(__name__)

#: file name endings of exported networks: TorchScript (``ckpt_export``) and ONNX (``onnx_export``)
EXPORT_EXTENSIONS = {".ts": "torchscript", ".onnx": "onnx"}


class OnnxNetwork(nn.Module):
    """An ONNX file run by an ``onnxruntime`` session, called like the network it was exported from.

    ``forward`` takes the network's input tensor and returns its outputs as tensors on the input's device: one
    tensor when the file has one output (and ``output_keys`` is None or ``["pred"]``, MONAI's single-output name),
    a dict ``{key: tensor}`` when ``output_keys`` names the outputs (in the file's output order, which is the order
    of the eager network's dict), a dict of lists when the file has ``n`` times as many outputs as ``output_keys``
    (a dict of ``n``-long lists flattened, e.g. RetinaNet's one map per pyramid level), else a tuple.

    Args:
        path: the ``.onnx`` file.
        output_keys: names of the outputs, e.g. the keys of the metadata's ``network_data_format#outputs``.
        providers: onnxruntime execution providers; default ``["CPUExecutionProvider"]``.
        num_threads: onnxruntime intra-op threads (None: onnxruntime's default).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file's number of outputs is not a multiple of ``output_keys``' length, or the file takes several
            inputs.
    """

    def __init__(
        self,
        path: str,
        output_keys: Sequence[str] | None = None,
        providers: Sequence[str] | None = None,
        num_threads: int | None = None,
    ) -> None:
        super().__init__()
        import onnxruntime

        if not os.path.isfile(path):
            raise FileNotFoundError(f"exported network {path} does not exist; write it with onnx_export first.")
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        self.path = str(path)
        self.session = onnxruntime.InferenceSession(
            self.path, options, providers=list(providers or ["CPUExecutionProvider"])
        )
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{path}: expected a network with one input, the file has {[i.name for i in inputs]}.")
        self.input_name, self.input_shape = inputs[0].name, list(inputs[0].shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        keys = list(output_keys) if output_keys is not None else None
        if keys is not None and keys != ["pred"] and (not keys or len(self.output_names) % len(keys)):
            raise ValueError(
                f"{path} has {len(self.output_names)} outputs {self.output_names}, but output_keys names {keys}."
            )
        self.output_keys = keys

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor] | tuple[torch.Tensor, ...]:
        """
        Args:
            x: the network input, e.g. ``(1, C, H, W)``, of the shape the file was exported with.

        Returns:
            the outputs on ``x``'s device (see the class docstring).

        Raises:
            ValueError: ``x`` has another shape than the file's fixed input shape.
        """
        fixed = [d if isinstance(d, int) else None for d in self.input_shape]
        if len(fixed) != x.ndim or any(d is not None and d != s for d, s in zip(fixed, x.shape)):
            raise ValueError(
                f"{self.path} was exported for input shape {self.input_shape}, got {list(x.shape)}; export it again "
                "with onnx_export --input_shape of this input."
            )
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        outputs = [torch.from_numpy(o).to(x.device) for o in self.session.run(None, {self.input_name: array})]
        if len(outputs) == 1 and (self.output_keys is None or self.output_keys == ["pred"]):
            return outputs[0]
        if self.output_keys is not None and len(outputs) == len(self.output_keys):
            return dict(zip(self.output_keys, outputs))
        if self.output_keys is not None and self.output_keys != ["pred"]:  # a dict of equally long lists
            n = len(outputs) // len(self.output_keys)
            return {k: list(outputs[i * n:(i + 1) * n]) for i, k in enumerate(self.output_keys)}
        return tuple(outputs)

    def __deepcopy__(self, memo: dict) -> OnnxNetwork:
        """A copy sharing the session (it holds no state between calls), e.g. for an inferer's inference copy."""
        clone = self.__class__.__new__(self.__class__)
        nn.Module.__init__(clone)
        for key in ("path", "session", "input_name", "input_shape", "output_names", "output_keys"):
            setattr(clone, key, getattr(self, key))
        clone.train(self.training)
        return clone

    def extra_repr(self) -> str:
        return f"path={self.path!r}, input_shape={self.input_shape}, outputs={self.output_keys or self.output_names}"


def is_exported_network(network: Any) -> bool:
    """Whether ``network`` came from an exported file (TorchScript or ONNX), directly or as the ``exported`` module
    of a wrapper: its weights are its own, a bundle checkpoint is not loaded into it."""
    if isinstance(network, (OnnxNetwork, torch.jit.ScriptModule)):
        return True
    inner = getattr(network, "exported", None)  # a wrapper such as networks.nets.retinanet.ExportedRetinaNet
    return isinstance(inner, (OnnxNetwork, torch.jit.ScriptModule))


def load_exported_network(
    path: str, device: torch.device | str = "cpu", output_keys: Sequence[str] | None = None, **onnx_kwargs: Any
) -> nn.Module:
    """The network of an exported file, in eval mode on ``device``.

    Args:
        path: ``model.ts`` (TorchScript, MONAI's ``ckpt_export``) or ``model.onnx`` (MONAI's ``onnx_export``); a
            checkpoint (``model.pt``) is not an exported network (it goes to ``ckpt_path``).
        device: where a TorchScript network runs (``map_location``); an ONNX network runs in onnxruntime and
            returns its outputs on the input's device.
        output_keys: names of an ONNX file's outputs (:class:`OnnxNetwork`); TorchScript keeps the network's own
            output structure.
        onnx_kwargs: ``providers``, ``num_threads`` of :class:`OnnxNetwork`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a ``.ts`` or ``.onnx`` file.
    """
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in EXPORT_EXTENSIONS:
        raise ValueError(f"exported network {path}: expected a {'/'.join(EXPORT_EXTENSIONS)} file.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"exported network {path} does not exist; write it with ckpt_export / onnx_export.")
    if EXPORT_EXTENSIONS[ext] == "onnx":
        network: nn.Module = OnnxNetwork(str(path), output_keys=output_keys, **onnx_kwargs)
    else:
        network = torch.jit.load(str(path), map_location=torch.device(device))
    logger.info(f"network loaded from the exported file {path} ({EXPORT_EXTENSIONS[ext]}).")
    return network.eval()


def select_network(
    network: nn.Module,
    exported_model: str | None = None,
    device: torch.device | str = "cpu",
    output_keys: Sequence[str] | None = None,
) -> nn.Module:
    """The network an inference config runs: ``network`` (the bundle's ``network_def``) on ``device``, or, when
    ``exported_model`` is given, that exported file (:func:`load_exported_network`) in its place.

    Args:
        network: the eager network.
        exported_model: an exported file (``--exported_model``), or None / empty for the eager network.
        device: where the network runs.
        output_keys: names of an ONNX file's outputs (the metadata's ``network_data_format#outputs`` keys).
    """
    if not exported_model:
        return network.to(device)
    return load_exported_network(str(exported_model), device=device, output_keys=output_keys)


def detection_network(
    network: nn.Module, exported_model: str | None = None, device: torch.device | str = "cpu"
) -> nn.Module:
    """The network a detection inference runs: ``network`` (a RetinaNet) on ``device``, or, with ``exported_model`` (a
    ``.ts`` / ``.onnx`` file), that file wrapped in :class:`networks.nets.retinanet.ExportedRetinaNet` with
    ``network``'s settings, so that MONAI's detector (anchors, box decoding, NMS) runs around it; a bundle checkpoint
    is then not loaded (:func:`is_exported_network`)."""
    from networks.nets.retinanet import ExportedRetinaNet

    if not exported_model:
        return network.to(device)
    keys = [getattr(network, "cls_key", "classification"), getattr(network, "box_reg_key", "box_regression")]
    return ExportedRetinaNet(select_network(network, exported_model, device, keys), network)
