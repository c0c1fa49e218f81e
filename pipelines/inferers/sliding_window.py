"""Sliding-window inference for 2D and 3D networks that must see windows of exactly ``roi_size``.

:class:`FastSlidingWindowInferer` is a drop-in replacement for MONAI's
:class:`monai.inferers.SlidingWindowInferer` (the same window grid, computed by MONAI's own functions in
:func:`window_slices`, and the same padding, blending and output shape, so with float32 and no test-time augmentation
the results agree to rounding) with the options that make whole-volume inference cheaper or better:

- mixed precision (``amp``): windows run under ``torch.autocast`` (bfloat16 on a CPU with AMX/AVX512-BF16, which
  make it fast, float32 on other CPUs; float16 on CUDA); or, faster still and a little less accurate, a
  low-precision copy of the whole network (``network_dtype``); predictions are accumulated in float32 either way;
- ``channels_last``: windows are laid out channels-last (``torch.channels_last_3d`` in 3D), which oneDNN and cuDNN
  convolutions prefer, and run through a copy of the network that keeps them channels-last from layer to layer
  (channels-last weights, layout-preserving instance norms); the copy of a ``DistributedDataParallel`` /
  ``DataParallel`` network is made of its ``.module``, never of the wrapper;
- batching ``sw_batch_size`` windows per forward pass, a cached Gaussian importance map, and stitching on the CPU
  (``device`` / ``cpu_thresh``) when the output volume would not fit next to the network on the accelerator;
- ``compile``: the network (or its low-precision copy) wrapped in ``torch.compile`` once per network and reused
  by later calls (on CPU, inductor fuses the memory-bound ops between convolutions);
- mirroring test-time augmentation as in nnU-Net (Isensee et al., "nnU-Net: a self-configuring method for deep
  learning-based biomedical image segmentation", Nature Methods 2021): every window is predicted for all flips of
  ``mirror_axes`` and the flipped-back predictions are averaged.

Every window handed to the network has exactly ``roi_size`` (inputs smaller than the window are padded and the
output cropped back), which networks built for a fixed patch depth, such as
:class:`networks.AttentionUNet` with ``attention="pam"``, require.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers import Inferer
from monai.inferers.utils import _get_scan_interval
from monai.utils import (
    BlendMode,
    PytorchPadMode,
    convert_to_dst_type,
    ensure_tuple,
    ensure_tuple_rep,
    fall_back_tuple,
    look_up_option,
    optional_import,
)

from pipelines.engines.precision import (
    autocast_dtype,
    prepare_network,
    to_channels_last,
)

tqdm, _ = optional_import("tqdm", name="tqdm")

__all__ = ["FastSlidingWindowInferer", "window_slices"]

_TTA_ACTIVATIONS = ("sigmoid", "softmax")


def window_slices(
    image_size: Sequence[int], roi_size: Sequence[int], overlap: Sequence[float] | float
) -> list[tuple[slice, ...]]:
    """The windows of a (padded) image: MONAI's sliding-window grid, in the order MONAI visits it.

    The scan interval along each axis is ``int(roi_size * (1 - overlap))`` (at least 1; the whole axis when
    ``roi_size == image_size``), computed by :func:`monai.inferers.utils._get_scan_interval`, and the windows are
    :func:`monai.data.utils.dense_patch_slices` of it (the last window along each axis aligned to the end): the grid
    :func:`monai.inferers.sliding_window_inference` uses.

    Args:
        image_size: spatial size of the (padded) image, ``>= roi_size`` along every axis.
        roi_size: window size, one entry per spatial axis.
        overlap: fraction of ``roi_size`` shared by neighbouring windows, in ``[0, 1)``, one value or one per axis.

    Returns:
        one tuple of spatial slices per window (first axis slowest); every window ``[s, s + roi)`` lies inside the
        image and together they cover it.

    Raises:
        ValueError: when ``image_size`` and ``roi_size`` differ in length, ``image_size < roi_size`` along an axis
            or an ``overlap`` is outside ``[0, 1)``.
    """
    image_size, roi_size = tuple(int(s) for s in image_size), tuple(int(r) for r in roi_size)
    if len(image_size) != len(roi_size):
        raise ValueError(f"image_size={image_size} and roi_size={roi_size} must have the same number of dims.")
    if any(s < r for s, r in zip(image_size, roi_size)):
        raise ValueError(f"image_size={image_size} must be >= roi_size={roi_size} (pad the input first).")
    overlaps = tuple(float(o) for o in ensure_tuple_rep(overlap, len(roi_size)))
    if not all(0 <= o < 1 for o in overlaps):
        raise ValueError(f"overlap must be in [0, 1), got overlap={overlap}.")
    interval = _get_scan_interval(image_size, roi_size, len(roi_size), overlaps)
    return [
        tuple(slice(int(w.start), int(w.stop)) for w in window)
        for window in dense_patch_slices(image_size, roi_size, interval)
    ]


def _unwrap(network: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """The module inside a ``DataParallel`` / ``DistributedDataParallel`` wrapper, else ``network`` itself."""
    if isinstance(network, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        return network.module
    return network


class FastSlidingWindowInferer(Inferer):
    """Sliding-window inference with mixed precision, channels-last windows, CPU stitching and mirroring TTA.

    Use it wherever MONAI's ``SlidingWindowInferer`` is used, e.g. ``SupervisedEvaluator(inferer=...)`` or a
    bundle's ``inferer: {_target_: pipelines.inferers.FastSlidingWindowInferer, roi_size: ..., amp: true}``.

    The image is covered by a regular grid of windows of ``roi_size`` overlapping by ``overlap`` (the last window
    along each axis aligned to the end); inputs smaller than ``roi_size`` are padded (``padding_mode``, ``cval``)
    and the output is cropped back, so the network only ever receives windows of exactly ``roi_size``. Window
    predictions are weighted by an importance map (``mode``; the Gaussian map is computed once per window size and
    cached), summed in float32 and divided by the summed weights.

    Output values: by default the blended network outputs (logits for a segmentation network). With
    ``tta_activation`` set, the activation is applied to every window prediction *before* averaging over the
    mirrored copies and blending, and the output is the blended **probabilities** (nnU-Net averages softmax
    probabilities): don't apply the activation again in post-processing. With ``mirror_axes`` and no
    ``tta_activation``, logits are averaged.

    Args:
        roi_size: spatial window size, one int per spatial dim or a single int for all. Entries that are ``None`` or
            non-positive take the input's size along that axis (as in MONAI).
        sw_batch_size: number of windows per network call.
        overlap: fraction of the window shared by neighbouring windows, in ``[0, 1)``, one value or one per axis.
        mode: ``"constant"`` (equal weights) or ``"gaussian"`` (less weight near window borders).
        sigma_scale: standard deviation of the Gaussian map as a fraction of ``roi_size``, one value or per axis.
        padding_mode: ``torch.nn.functional.pad`` mode for inputs smaller than ``roi_size``: ``"constant"``,
            ``"reflect"``, ``"replicate"`` or ``"circular"``.
        cval: fill value of ``"constant"`` padding.
        sw_device: device the windows (and the network) run on. Defaults to the input's device.
        device: device the output is stitched on and returned on. Defaults to the input's device; see ``cpu_thresh``.
        cpu_thresh: when given and the (padded) input has more than ``cpu_thresh`` voxels, stitch on the CPU
            regardless of ``device`` (keeps accelerator memory independent of the volume size).
        amp: run the network under ``torch.autocast`` on ``sw_device``.
        autocast_dtype: autocast dtype; by default as the bundles' ``amp`` resolves it
            (:func:`pipelines.engines.precision.autocast_dtype`): ``torch.float16`` on CUDA, ``torch.bfloat16`` on a
            CPU with bfloat16 instructions, none (float32, with a warning) on a CPU without them, where bfloat16
            would run oneDNN's slow reference kernels. Set it to force a dtype.
        network_dtype: when given (e.g. ``torch.bfloat16``), every call runs a copy of ``network`` (an
            ``nn.Module``) cast to this dtype, on windows of this dtype. Faster than ``amp`` (no per-op casts) but
            every op, normalisation included, runs in low precision. The copy is made afresh at each call, so the
            weights are always the current ones (validation during training) and ``network`` is left untouched.
        channels_last: hand windows to the network in channels-last memory format (``torch.channels_last`` in 2D,
            ``torch.channels_last_3d`` in 3D). For an ``nn.Module`` the windows run through a copy of it (made at
            each call, like the ``network_dtype`` copy, which it then is) whose convolution weights are channels-last
            and whose instance norms keep activations channels-last (see :meth:`inference_copy`), so no layer
            converts between layouts. Numerically a no-op up to rounding; faster for oneDNN and cuDNN convolutions.
        mirror_axes: spatial axes (0 = first spatial dim, negative values count from the end) to mirror for
            test-time augmentation: the prediction is the average over all ``2 ** len(mirror_axes)`` combinations
            of flips, each flipped back. Empty for no TTA.
        tta_activation: ``"sigmoid"``, ``"softmax"`` (over channels) or ``None``; see "Output values" above.
        compile: wrap the network that runs the windows (``network``, or its ``network_dtype`` copy) in
            ``torch.compile(..., dynamic=False)``. The compiled module of the most recent network is kept (with a
            reference to that network) and reused by later calls on the same network, which therefore pay the
            compilation only once per window shape; another network replaces it. With ``network_dtype`` the cached
            copy's parameters and buffers are refreshed from ``network`` at each call (so the weights are always the
            current ones, as without ``compile``); with ``channels_last`` the copy's convolution weights are
            channels-last too. Needs an ``nn.Module``. On CPU the first call compiles for minutes on a few cores.
        compile_backend: ``torch.compile`` backend (default ``"inductor"``; ``"eager"`` only exercises the
            plumbing).
        progress: show a ``tqdm`` progress bar over window batches.

    Raises:
        ValueError: for an invalid ``sw_batch_size``, ``overlap``, ``mode``, ``padding_mode``, ``mirror_axes`` or
            ``tta_activation``, naming the value.

    Example::

        inferer = FastSlidingWindowInferer(roi_size=(128, 128, 128), sw_batch_size=2, amp=True, channels_last=True)
        with torch.inference_mode():
            logits = inferer(image, network)  # image (B, C, H, W, D) -> logits (B, C_out, H, W, D)
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int,
        sw_batch_size: int = 1,
        overlap: Sequence[float] | float = 0.25,
        mode: BlendMode | str = BlendMode.CONSTANT,
        sigma_scale: Sequence[float] | float = 0.125,
        padding_mode: PytorchPadMode | str = PytorchPadMode.CONSTANT,
        cval: float = 0.0,
        sw_device: torch.device | str | None = None,
        device: torch.device | str | None = None,
        cpu_thresh: int | None = None,
        amp: bool = False,
        autocast_dtype: torch.dtype | None = None,
        network_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        mirror_axes: Sequence[int] | int = (),
        tta_activation: str | None = None,
        compile: bool = False,
        compile_backend: str | Callable = "inductor",
        progress: bool = False,
    ) -> None:
        super().__init__()
        if int(sw_batch_size) < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got sw_batch_size={sw_batch_size}.")
        for o in ensure_tuple(overlap):
            if not 0 <= float(o) < 1:
                raise ValueError(f"overlap must be in [0, 1), got overlap={overlap}.")
        mirror_axes = tuple(int(a) for a in ensure_tuple(mirror_axes))
        if len(set(mirror_axes)) != len(mirror_axes):
            raise ValueError(f"mirror_axes must not repeat an axis, got mirror_axes={mirror_axes}.")
        if tta_activation is not None and tta_activation not in _TTA_ACTIVATIONS:
            raise ValueError(f"tta_activation must be one of {_TTA_ACTIVATIONS} or None, got {tta_activation!r}.")
        if cpu_thresh is not None and cpu_thresh < 0:
            raise ValueError(f"cpu_thresh must be None or >= 0, got cpu_thresh={cpu_thresh}.")
        self.roi_size = roi_size
        self.sw_batch_size = int(sw_batch_size)
        self.overlap = overlap
        self.mode = look_up_option(mode, BlendMode)
        self.sigma_scale = sigma_scale
        self.padding_mode = look_up_option(padding_mode, PytorchPadMode)
        self.cval = cval
        self.sw_device = sw_device
        self.device = device
        self.cpu_thresh = cpu_thresh
        self.amp = amp
        self.autocast_dtype = autocast_dtype
        self.network_dtype = network_dtype
        self.channels_last = channels_last
        self.mirror_axes = mirror_axes
        self.tta_activation = tta_activation
        self.compile = bool(compile)
        self.compile_backend = compile_backend
        self.progress = progress
        self._importance_maps: dict[tuple, torch.Tensor] = {}
        # compile: (network, module that runs its windows: network itself or its low-precision copy, compiled module)
        self._compiled: tuple[torch.nn.Module, torch.nn.Module, Callable[..., torch.Tensor]] | None = None

    # ---- public entry point ---------------------------------------------------------------------------------------

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Run ``network`` over windows of ``inputs`` and stitch the predictions.

        Args:
            inputs: image of shape ``(B, C, *spatial)`` with 2 or 3 spatial dims (a ``MetaTensor`` keeps its meta).
            network: callable mapping windows ``(N, C, *roi_size)`` to a tensor ``(N, C_out, *roi_size)``.
            args: extra positional arguments for ``network``.
            kwargs: extra keyword arguments for ``network``.

        Returns:
            float32 tensor ``(B, C_out, *spatial)`` on ``device`` (same type as ``inputs``: a ``MetaTensor`` input
            gives a ``MetaTensor`` with its meta).

        Raises:
            ValueError: when ``inputs`` is not ``(B, C, *spatial)`` matching ``roi_size``, a mirror axis is out of
                range, or the network returns windows of another spatial size or batch size.
            TypeError: when the network returns something other than a tensor, or ``network_dtype`` is set and
                ``network`` is not an ``nn.Module``.
        """
        spatial_dims = inputs.ndim - 2
        if spatial_dims < 1:
            raise ValueError(f"inputs must be (B, C, *spatial), got shape {tuple(inputs.shape)}.")
        if isinstance(self.roi_size, Sequence) and len(self.roi_size) != spatial_dims:
            raise ValueError(
                f"roi_size={tuple(self.roi_size)} has {len(self.roi_size)} dims but inputs of shape "
                f"{tuple(inputs.shape)} have {spatial_dims} spatial dims (expected (B, C, *spatial))."
            )
        image_size = tuple(int(s) for s in inputs.shape[2:])
        roi_size = tuple(int(r) for r in fall_back_tuple(self.roi_size, image_size))
        overlap = tuple(float(o) for o in ensure_tuple_rep(self.overlap, spatial_dims))
        mirror_dims = self._mirror_dims(spatial_dims)

        plain = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        plain, crop = self._pad(plain, roi_size)
        padded_size = tuple(plain.shape[2:])
        sw_device = torch.device(self.sw_device) if self.sw_device is not None else plain.device
        device = self._stitch_device(plain, padded_size)

        windows = window_slices(padded_size, roi_size, overlap)
        weight = self._importance_map(roi_size, sw_device)  # (1, 1, *roi_size) float32, or None for constant
        batch = plain.shape[0]
        total = batch * len(windows)

        network = self.prepare_network(network)
        output: torch.Tensor | None = None
        batches = range(0, total, self.sw_batch_size)
        for first in tqdm(batches, desc="sliding window") if self.progress else batches:
            stop = min(first + self.sw_batch_size, total)
            index = [(i // len(windows), windows[i % len(windows)]) for i in range(first, stop)]  # (image, window)
            win = torch.stack([plain[(b, slice(None), *w)] for b, w in index]).to(sw_device)
            pred = self._predict(network, win, mirror_dims, roi_size, *args, **kwargs)
            if weight is not None:
                pred = pred * weight
            pred = pred.to(device)
            if output is None:
                output = torch.zeros((batch, pred.shape[1], *padded_size), dtype=torch.float32, device=device)
            for p, (b, w) in zip(pred, index):
                output[(b, slice(None), *w)] += p
        assert output is not None  # at least one window

        output /= self._weight_sum(windows, roi_size, padded_size, weight, device)
        output = output[(slice(None), slice(None), *crop)]
        if isinstance(inputs, MetaTensor):  # keep the affine and applied operations (Invertd needs them)
            meta = MetaTensor([]).copy_meta_from(inputs, copy_attr=False)
            output = convert_to_dst_type(output, meta, dtype=torch.float32, device=device)[0]
        return output

    # ---- hooks (override one in a subclass to change a step) ------------------------------------------------------

    def prepare_network(self, network: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """The callable that runs the windows of one ``__call__``: ``network`` itself, or, for an ``nn.Module``
        with ``network_dtype`` or ``channels_last``, its inference copy (:meth:`inference_copy`, made of the module
        inside a ``DataParallel`` / ``DistributedDataParallel`` wrapper); compiled (and cached per network) with
        ``compile``."""
        is_module = isinstance(network, torch.nn.Module)
        if not is_module and (self.network_dtype is not None or self.compile):
            option = f"network_dtype={self.network_dtype}" if self.network_dtype is not None else "compile=True"
            raise TypeError(f"{option} needs an nn.Module, got {type(network).__name__}.")
        needs_copy = is_module and (self.network_dtype is not None or self.channels_last)
        if not self.compile:
            return self.inference_copy(network) if needs_copy else network
        cached = self._compiled[1:] if self._compiled is not None and self._compiled[0] is network else None
        if cached is None:
            module = network
            if needs_copy:
                # ordinary (not inference) tensors, so that _refresh_copy may update them in or out of inference mode
                with torch.inference_mode(False), torch.no_grad():
                    module = self.inference_copy(network).requires_grad_(False)
            cached = (module, torch.compile(module, backend=self.compile_backend, dynamic=False))
            self._compiled = (network, *cached)
        elif cached[0] is not network:
            self._refresh_copy(_unwrap(network), cached[0])
        return cached[1]

    def inference_copy(self, network: torch.nn.Module) -> torch.nn.Module:
        """A copy of ``network`` for the windows: cast to ``network_dtype`` (when set) and, with ``channels_last``,
        with channels-last convolution weights and every instance norm replaced by
        :class:`networks.blocks.LayoutPreservingInstanceNorm` (PyTorch's instance norm returns contiguous
        activations, which every following convolution would convert back: two copies per layer). ``network``
        itself is left untouched.

        A ``DataParallel`` / ``DistributedDataParallel`` wrapper is never copied (deep-copying one would copy its
        process group and reducer, and its parameter names carry a ``module.`` prefix): the copy is made of the
        wrapped ``network.module``, so the windows of each rank run on that rank's local module, with no collective
        call per forward pass."""
        module = copy.deepcopy(_unwrap(network))
        if self.network_dtype is not None:
            module = module.to(self.network_dtype)
        return prepare_network(module, channels_last=self.channels_last)

    @staticmethod
    def _refresh_copy(source: torch.nn.Module, target: torch.nn.Module) -> None:
        """Copy ``source``'s current parameters and buffers into its cached low-precision copy, in place (the
        compiled module keeps referring to the copy's tensors). ``source`` is the unwrapped module (see
        :meth:`inference_copy`)."""
        with torch.no_grad():
            targets = dict(itertools.chain(target.named_parameters(), target.named_buffers()))
            for name, value in itertools.chain(source.named_parameters(), source.named_buffers()):
                targets[name].copy_(value)
        target.train(source.training)

    def network_forward(self, network: Callable[..., torch.Tensor], win: torch.Tensor, *args: Any, **kwargs: Any):
        """One forward pass of ``network`` on a batch of windows ``(N, C, *roi_size)`` (autocast and memory format
        are set up here); returns the raw network output."""
        if self.network_dtype is not None:
            win = win.to(self.network_dtype)
        if self.channels_last:
            win = to_channels_last(win)
        if not self.amp:
            return network(win, *args, **kwargs)
        dtype = self.autocast_dtype or autocast_dtype(win.device, True)
        if dtype is None:
            return network(win, *args, **kwargs)
        with torch.autocast(device_type=win.device.type, dtype=dtype):
            return network(win, *args, **kwargs)

    # ---- internals -----------------------------------------------------------------------------------------------

    def _predict(
        self,
        network: Callable[..., torch.Tensor],
        win: torch.Tensor,
        mirror_dims: list[tuple[int, ...]],
        roi_size: tuple[int, ...],
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Float32 prediction ``(N, C_out, *roi_size)`` for windows ``(N, C, *roi_size)``, averaged over flips."""
        total: torch.Tensor | None = None
        for dims in mirror_dims:
            out = self.network_forward(network, torch.flip(win, dims) if dims else win, *args, **kwargs)
            if not isinstance(out, torch.Tensor):
                raise TypeError(
                    f"{type(self).__name__} needs a network that returns one tensor, got {type(out).__name__}."
                )
            if out.shape[0] != win.shape[0] or tuple(out.shape[2:]) != roi_size:
                raise ValueError(
                    f"the network must map windows {tuple(win.shape)} to (N, C_out, *roi_size={roi_size}), "
                    f"got output shape {tuple(out.shape)}."
                )
            out = out.float()
            if dims:
                out = torch.flip(out, dims)
            if self.tta_activation == "sigmoid":
                out = torch.sigmoid(out)
            elif self.tta_activation == "softmax":
                out = torch.softmax(out, dim=1)
            total = out if total is None else total.add_(out)
        assert total is not None
        return total.div_(len(mirror_dims)) if len(mirror_dims) > 1 else total

    def _mirror_dims(self, spatial_dims: int) -> list[tuple[int, ...]]:
        """All flip combinations of ``mirror_axes`` as tensor dims (the empty one first)."""
        axes = []
        for a in self.mirror_axes:
            if not -spatial_dims <= a < spatial_dims:
                raise ValueError(
                    f"mirror_axes={self.mirror_axes} has axis {a} out of range for {spatial_dims} spatial dims."
                )
            axes.append(a % spatial_dims + 2)
        if len(set(axes)) != len(axes):
            raise ValueError(f"mirror_axes={self.mirror_axes} names the same axis twice.")
        return [c for n in range(len(axes) + 1) for c in itertools.combinations(axes, n)]

    def _pad(self, x: torch.Tensor, roi_size: tuple[int, ...]) -> tuple[torch.Tensor, tuple[slice, ...]]:
        """Pad spatial axes shorter than ``roi_size`` (half before, the rest after); returns the crop back."""
        before = [max(r - s, 0) // 2 for r, s in zip(roi_size, x.shape[2:])]
        after = [max(r - s, 0) - b for r, s, b in zip(roi_size, x.shape[2:], before)]
        crop = tuple(slice(b, b + s) for b, s in zip(before, x.shape[2:]))
        if any(before) or any(after):
            pad = [p for b, a in zip(reversed(before), reversed(after)) for p in (b, a)]  # last axis first
            value = self.cval if self.padding_mode == PytorchPadMode.CONSTANT else None
            x = F.pad(x, pad, mode=self.padding_mode, value=value)
        return x, crop

    def _stitch_device(self, x: torch.Tensor, padded_size: tuple[int, ...]) -> torch.device:
        if self.cpu_thresh is not None and math.prod(padded_size) > self.cpu_thresh:
            return torch.device("cpu")
        return torch.device(self.device) if self.device is not None else x.device

    def _importance_map(self, roi_size: tuple[int, ...], device: torch.device) -> torch.Tensor | None:
        """Cached ``(1, 1, *roi_size)`` float32 window weights, or ``None`` for constant blending (all ones)."""
        if self.mode == BlendMode.CONSTANT:
            return None
        key = (roi_size, tuple(ensure_tuple_rep(self.sigma_scale, len(roi_size))), str(device))
        if key not in self._importance_maps:
            weights = compute_importance_map(
                roi_size, mode=self.mode, sigma_scale=self.sigma_scale, device=device, dtype=torch.float32
            )
            self._importance_maps[key] = weights[None, None]
        return self._importance_maps[key]

    @staticmethod
    def _weight_sum(
        windows: list[tuple[slice, ...]],
        roi_size: tuple[int, ...],
        padded_size: tuple[int, ...],
        weight: torch.Tensor | None,
        device: torch.device,
    ) -> torch.Tensor:
        """Sum of the window weights at every voxel, ``(1, 1, *padded_size)``."""
        total = torch.zeros((1, 1, *padded_size), dtype=torch.float32, device=device)
        w = weight.to(device) if weight is not None else torch.ones((1, 1, *roi_size), device=device)
        for window in windows:
            total[(slice(None), slice(None), *window)] += w
        return total
