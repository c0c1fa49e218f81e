from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, sliding_window_inference

from networks import AttentionUNet
from pipelines.inferers import FastSlidingWindowInferer, window_slices

# (spatial input size, roi_size, overlap): not divisible by roi, smaller than roi in one axis, per-axis overlap
MATCH_MONAI_CASES = [
    ((20, 17), (8, 8), 0.25),
    ((5, 23), (8, 6), 0.5),  # smaller than roi along the first axis
    ((16, 16), (16, 16), 0.25),  # a single window
    ((13, 9, 11), (6, 5, 4), 0.25),
    ((4, 12, 9), (6, 5, 4), (0.0, 0.5, 0.3)),  # per-axis overlap, padded along the first axis
    ((10, 10, 7), (4, 4, 8), 0.6),
]


def _conv_net(spatial_dims: int, in_channels: int = 2, out_channels: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d if spatial_dims == 2 else torch.nn.Conv3d
    return torch.nn.Sequential(
        conv(in_channels, 4, 3, padding=1), torch.nn.PReLU(), conv(4, out_channels, 3, padding=1)
    ).eval()


def _input(size: tuple[int, ...], batch: int = 2, channels: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, channels, *size, generator=torch.Generator().manual_seed(seed))


class _ShapeRecorder(torch.nn.Module):
    """Wraps a network and records the shapes of the windows it is given."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.shapes = net, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.net(x)


@pytest.mark.parametrize("size, roi, overlap", MATCH_MONAI_CASES)
@pytest.mark.parametrize("mode, atol", [("constant", 1e-5), ("gaussian", 1e-4)])
def test_matches_monai(size, roi, overlap, mode, atol):
    net, x = _conv_net(len(size)), _input(size)
    with torch.no_grad():
        expected = sliding_window_inference(x, roi, 3, net, overlap=overlap, mode=mode)
        out = FastSlidingWindowInferer(roi, sw_batch_size=3, overlap=overlap, mode=mode)(x, net)
    assert isinstance(FastSlidingWindowInferer(roi), Inferer)
    assert out.shape == expected.shape == (2, 3, *size) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=atol, rtol=0)


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate"])
def test_padding_modes_match_monai(padding_mode):
    net, x = _conv_net(2), _input((5, 11))
    with torch.no_grad():
        expected = sliding_window_inference(x, (8, 8), 1, net, padding_mode=padding_mode)
        out = FastSlidingWindowInferer((8, 8), padding_mode=padding_mode)(x, net)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size, roi, overlap", MATCH_MONAI_CASES)
def test_windows_always_have_roi_size(size, roi, overlap):
    net = _ShapeRecorder(_conv_net(len(size)))
    with torch.no_grad():
        FastSlidingWindowInferer(roi, sw_batch_size=4, overlap=overlap, mirror_axes=(0,))(_input(size, batch=3), net)
    assert net.shapes and all(s[2:] == roi and 1 <= s[0] <= 4 for s in net.shapes)
    n_windows = len(window_slices([max(s, r) for s, r in zip(size, roi)], roi, overlap))
    assert sum(s[0] for s in net.shapes) == 2 * 3 * n_windows  # two mirror copies of 3 images


def test_window_slices_grid():
    # step int(128 * 0.75) = 96 along 240: 0, 96, then the last window aligned to the end (112); 155: 0, 27
    windows = window_slices((240, 155), (128, 128), 0.25)
    starts = [tuple(w.start for w in window) for window in windows]
    assert starts == [(0, 0), (0, 27), (96, 0), (96, 27), (112, 0), (112, 27)]  # first axis slowest, as MONAI
    assert all(w.stop - w.start == 128 for window in windows for w in window)
    assert [w[0].start for w in window_slices((8,), (8,), 0.5)] == [0]  # roi == image: one window
    assert [w[0].start for w in window_slices((10,), (4,), 0.0)] == [0, 4, 6]
    assert [w[0].start for w in window_slices((10,), (4,), 0.9)] == list(range(7))  # step int(0.4) -> 1
    assert [(w[0].start, w[1].start) for w in window_slices((10, 6), (4, 4), (0.0, 0.5))] == [
        (0, 0), (0, 2), (4, 0), (4, 2), (6, 0), (6, 2)
    ]
    with pytest.raises(ValueError, match=r"roi_size=\(8,\)"):
        window_slices((5,), (8,), 0.25)
    with pytest.raises(ValueError, match="overlap=1.0"):
        window_slices((10,), (4,), 1.0)
    with pytest.raises(ValueError, match="same number of dims"):
        window_slices((10, 10), (4,), 0.25)


def test_pam_attention_unet_gets_exact_windows():
    roi = (16, 16, 8)
    torch.manual_seed(0)
    net = AttentionUNet(
        spatial_dims=3, in_channels=2, out_channels=2, features=(4, 8), attention="pam", patch_size=roi
    ).eval()
    x = _input((20, 11, 13), batch=1)  # smaller than roi along H, not divisible along W and D
    with torch.no_grad():
        with pytest.raises(ValueError):
            net(x)  # the whole volume has the wrong depth
        out = FastSlidingWindowInferer(roi, sw_batch_size=2, mode="gaussian")(x, net)
        expected = sliding_window_inference(x, roi, 2, net, mode="gaussian")
    assert out.shape == (1, 2, 20, 11, 13)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("spatial_dims, mirror_axes", [(2, (0, 1)), (3, (0, 2)), (3, (-1,))])
def test_mirroring_is_a_no_op_for_a_flip_equivariant_network(spatial_dims, mirror_axes):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d if spatial_dims == 2 else torch.nn.Conv3d
    net = conv(2, 3, 1).eval()  # 1x1 convolution: commutes with flips
    x = _input((11, 9, 7)[:spatial_dims])
    roi = (6, 5, 4)[:spatial_dims]
    with torch.no_grad():
        plain = FastSlidingWindowInferer(roi, overlap=0.5)(x, net)
        tta = FastSlidingWindowInferer(roi, overlap=0.5, mirror_axes=mirror_axes)(x, net)
    torch.testing.assert_close(tta, plain, atol=1e-5, rtol=0)


@pytest.mark.parametrize("activation", [None, "sigmoid", "softmax"])
def test_mirroring_averages_flipped_predictions(activation):
    net, x = _conv_net(3), _input((8, 6, 4), batch=1)
    roi, axes = (8, 6, 4), (0, 2)  # one window: the average over flips is easy to write by hand
    act = {None: lambda t: t, "sigmoid": torch.sigmoid, "softmax": lambda t: torch.softmax(t, 1)}[activation]
    with torch.no_grad():
        expected = sum(
            act(torch.flip(net(torch.flip(x, d)), d)) for d in [(), (2,), (4,), (2, 4)]
        ) / 4
        plain = act(net(x))
        out = FastSlidingWindowInferer(roi, mirror_axes=axes, tta_activation=activation)(x, net)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert (out - plain).abs().max() > 1e-3  # the network is not flip-equivariant
    if activation is not None:
        assert out.min() >= 0 and out.max() <= 1


def test_bfloat16_autocast_and_channels_last_are_close_to_float32():
    net, x = _conv_net(3), _input((13, 9, 11))
    kwargs = dict(roi_size=(6, 5, 4), sw_batch_size=4, mode="gaussian")
    with torch.no_grad():
        reference = FastSlidingWindowInferer(**kwargs)(x, net)
        fast = FastSlidingWindowInferer(**kwargs, amp=True, autocast_dtype=torch.bfloat16, channels_last=True)(x, net)
        cl_only = FastSlidingWindowInferer(**kwargs, channels_last=True)(x, net)
    with torch.inference_mode():
        bf16_copy = FastSlidingWindowInferer(**kwargs, network_dtype=torch.bfloat16, channels_last=True)(x, net)
    assert fast.dtype == bf16_copy.dtype == torch.float32
    assert next(net.parameters()).dtype == torch.float32  # the network itself is not cast
    torch.testing.assert_close(fast, reference, atol=5e-2, rtol=0)
    torch.testing.assert_close(bf16_copy, reference, atol=5e-2, rtol=0)
    torch.testing.assert_close(cl_only, reference, atol=1e-5, rtol=0)


def test_stitch_device_progress_and_meta_do_not_change_results():
    net, x = _conv_net(2), _input((20, 17))
    with torch.no_grad():
        reference = FastSlidingWindowInferer((8, 8), mode="gaussian")(x, net)
        on_cpu = FastSlidingWindowInferer((8, 8), mode="gaussian", device="cpu", sw_device="cpu")(x, net)
        auto = FastSlidingWindowInferer((8, 8), mode="gaussian", cpu_thresh=100)(x, net)
        inferer = FastSlidingWindowInferer((8, 8), mode="gaussian", progress=True)
        progress = inferer(MetaTensor(x, meta={"filename_or_obj": "case.nii.gz"}), net)
        again = inferer(x, net)  # cached importance map
    for out in (on_cpu, auto, again):
        torch.testing.assert_close(out, reference, atol=0, rtol=0)
    assert isinstance(progress, MetaTensor) and progress.meta["filename_or_obj"] == "case.nii.gz"
    torch.testing.assert_close(progress.as_tensor(), reference, atol=0, rtol=0)
    assert len(inferer._importance_maps) == 1


def test_roi_fall_back_and_int_roi():
    net, x = _conv_net(2), _input((12, 10))
    with torch.no_grad():
        torch.testing.assert_close(
            FastSlidingWindowInferer((-1, 4))(x, net), sliding_window_inference(x, (-1, 4), 1, net), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            FastSlidingWindowInferer(5)(x, net), sliding_window_inference(x, 5, 1, net), atol=1e-5, rtol=0
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sw_batch_size=0), "sw_batch_size=0"),
        (dict(overlap=1.0), "overlap=1.0"),
        (dict(overlap=(0.2, -0.1)), r"overlap=\(0.2, -0.1\)"),
        (dict(mode="linear"), "linear"),
        (dict(tta_activation="relu"), "'relu'"),
        (dict(mirror_axes=(0, 0)), r"mirror_axes=\(0, 0\)"),
        (dict(cpu_thresh=-1), "cpu_thresh=-1"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FastSlidingWindowInferer((8, 8), **kwargs)


def test_bad_inputs_and_outputs_name_the_problem():
    net, x = _conv_net(2), _input((12, 10))
    with pytest.raises(ValueError, match=r"roi_size=\(4, 4, 4\)"):
        FastSlidingWindowInferer((4, 4, 4))(x, net)
    with pytest.raises(ValueError, match=r"mirror_axes=\(2,\)"):
        FastSlidingWindowInferer((4, 4), mirror_axes=2)(x, net)
    with pytest.raises(ValueError, match="output shape"):
        FastSlidingWindowInferer((4, 4))(x, torch.nn.MaxPool2d(2))
    with pytest.raises(TypeError, match="tuple"):
        FastSlidingWindowInferer((4, 4))(x, lambda w: (w, w))
    with pytest.raises(TypeError, match="nn.Module"):
        FastSlidingWindowInferer((4, 4), network_dtype=torch.bfloat16)(x, lambda w: w)


def test_instantiates_from_bundle_config():
    from monai.bundle import ConfigParser

    config = {
        "roi_size": [8, 8],
        "inferer": {
            "_target_": "pipelines.inferers.FastSlidingWindowInferer",
            "roi_size": "@roi_size",
            "sw_batch_size": 2,
            "overlap": 0.5,
            "mode": "gaussian",
            "amp": True,
            "channels_last": True,
            "mirror_axes": [0, 1],
            "tta_activation": "sigmoid",
            "cpu_thresh": 1000000,
        },
    }
    inferer = ConfigParser(config).get_parsed_content("inferer")
    assert isinstance(inferer, FastSlidingWindowInferer) and inferer.mirror_axes == (0, 1)
    with torch.no_grad():
        out = inferer(_input((12, 10)), _conv_net(2))
    assert out.shape == (2, 3, 12, 10) and 0 <= out.min() and out.max() <= 1


def test_compile_matches_eager_and_is_cached():
    # the "eager" backend runs the Dynamo-captured graph without code generation: it tests the option's plumbing
    # (caching per network, refreshed low-precision copy) in well under a second
    net, x = _conv_net(3), _input((13, 9, 11))
    kwargs = dict(roi_size=(6, 5, 4), sw_batch_size=4, mode="gaussian")
    inferer = FastSlidingWindowInferer(**kwargs, compile=True, compile_backend="eager")
    with torch.inference_mode():
        reference = FastSlidingWindowInferer(**kwargs)(x, net)
        out = inferer(x, net)
        compiled = inferer.prepare_network(net)
        again = inferer(x, net)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(again, reference, atol=0, rtol=0)
    assert inferer.prepare_network(net) is compiled  # compiled once per network
    assert inferer._compiled[1] is net  # float32: the network itself, no copy

    other = _conv_net(3, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(inferer(x, other), FastSlidingWindowInferer(**kwargs)(x, other), atol=1e-5, rtol=0)
    assert inferer._compiled[0] is other and inferer.prepare_network(net) is not compiled  # replaced


def test_compile_with_network_dtype_refreshes_the_cached_copy():
    net, x = _conv_net(3), _input((13, 9, 11))
    kwargs = dict(roi_size=(6, 5, 4), sw_batch_size=4, mode="gaussian", network_dtype=torch.bfloat16)
    inferer = FastSlidingWindowInferer(**kwargs, channels_last=True, compile=True, compile_backend="eager")
    with torch.inference_mode():
        out = inferer(x, net)
        expected = FastSlidingWindowInferer(**kwargs, channels_last=True)(x, net)
    copy_ = inferer._compiled[1]
    assert copy_ is not net and next(copy_.parameters()).dtype == torch.bfloat16
    assert next(net.parameters()).dtype == torch.float32  # the network itself is not cast
    assert copy_[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, expected, atol=1e-2, rtol=0)

    with torch.no_grad():  # "training" changes the weights: the next call must use the new ones
        for p in net.parameters():
            p.mul_(-0.5)
    with torch.no_grad():
        updated = inferer(x, net)
        expected = FastSlidingWindowInferer(**kwargs)(x, net)
    assert inferer._compiled[1] is copy_  # same copy, refreshed in place
    torch.testing.assert_close(updated, expected, atol=1e-2, rtol=0)
    assert (updated - out).abs().max() > 0.1


def test_compile_needs_a_module():
    with pytest.raises(TypeError, match=r"compile=True needs an nn.Module"):
        FastSlidingWindowInferer((4, 4), compile=True, compile_backend="eager")(_input((12, 10)), lambda w: w)


@pytest.mark.parametrize("network_dtype", [None, torch.bfloat16])
def test_channels_last_copy_keeps_every_layer_channels_last(network_dtype):
    """The bfloat16 inference copy of a PAM UNet (conv -> PReLU -> InstanceNorm, PAM, max-pool, trilinear
    upsampling, concatenation) never converts a window back to the contiguous layout; the user's network is
    untouched; the float32 copy gives the float32 result."""
    from networks.blocks.norm import LayoutPreservingInstanceNorm

    torch.manual_seed(0)
    net = AttentionUNet(3, in_channels=2, out_channels=2, features=(4, 8, 16), patch_size=(8, 8, 8)).eval()
    inferer = FastSlidingWindowInferer((8, 8, 8), channels_last=True, network_dtype=network_dtype)
    copy_ = inferer.inference_copy(net)
    norms = [m for m in copy_.modules() if isinstance(m, LayoutPreservingInstanceNorm)]
    assert len(norms) == 10 and not any(isinstance(m, LayoutPreservingInstanceNorm) for m in net.modules())
    assert next(net.parameters()).dtype == torch.float32 and net.encoder[0].convs.conv_0.conv.weight.is_contiguous()
    layouts = []  # (layer type, input channels-last, output channels-last)
    cl = torch.channels_last_3d
    for module in copy_.modules():
        if isinstance(module, (torch.nn.Conv3d, LayoutPreservingInstanceNorm, torch.nn.PReLU)):
            module.register_forward_hook(
                lambda m, i, o: layouts.append((type(m), i[0].is_contiguous(memory_format=cl), o.is_contiguous(memory_format=cl)))
            )
    x = _input((12, 10, 9), batch=1)
    with torch.no_grad():
        inferer.network_forward(copy_, x[..., :8, :8, :8])
        reference = FastSlidingWindowInferer((8, 8, 8))(x, net)
        fast = inferer(x, net)
    # norms and activations never change the layout they are given
    assert layouts and all(i == o for t, i, o in layouts if t is not torch.nn.Conv3d)
    # oneDNN's bfloat16 convolutions (AVX512-BF16 / AMX CPUs) keep channels-last: then every layer does; float32
    # convolutions this small, and bfloat16 ones on other CPUs, run on PyTorch's own (contiguous-output) kernel
    if network_dtype is not None and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert all(o for _, _, o in layouts)
    tolerance = 1e-5 if network_dtype is None else 1e-1
    torch.testing.assert_close(fast, reference, atol=tolerance, rtol=0)


def _count_wrapper_copies(monkeypatch) -> list[type]:
    """Record the type of every ``copy.deepcopy`` argument in the inferer's module."""
    from pipelines.inferers import sliding_window

    copied: list[type] = []
    real = sliding_window.copy.deepcopy

    def deepcopy(obj, *args, **kwargs):
        copied.append(type(obj))
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(sliding_window.copy, "deepcopy", deepcopy)
    return copied


@pytest.mark.parametrize("network_dtype, atol", [(None, 1e-5), (torch.bfloat16, 5e-2)])
def test_data_parallel_wrapper_is_unwrapped_before_the_copy(monkeypatch, network_dtype, atol):
    net, x = _conv_net(3), _input((13, 9, 11))
    wrapped = torch.nn.DataParallel(net)  # on CPU: forwards to net.module
    copied = _count_wrapper_copies(monkeypatch)
    inferer = FastSlidingWindowInferer((6, 5, 4), sw_batch_size=4, channels_last=True, network_dtype=network_dtype)
    copy_ = inferer.inference_copy(wrapped)
    assert copied == [torch.nn.Sequential]  # the wrapped module, never the wrapper
    assert isinstance(copy_, torch.nn.Sequential) and copy_[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        reference = FastSlidingWindowInferer((6, 5, 4), sw_batch_size=4)(x, net)
        out = inferer(x, wrapped)
    torch.testing.assert_close(out, reference, atol=atol, rtol=0)
    assert torch.nn.DataParallel not in copied


def test_compiled_copy_of_a_wrapped_network_is_refreshed():
    # parameter names of the wrapper carry a "module." prefix; the cached copy is refreshed from the wrapped module
    net, x = _conv_net(3), _input((13, 9, 11))
    wrapped = torch.nn.DataParallel(net)
    kwargs = {"roi_size": (6, 5, 4), "sw_batch_size": 4, "network_dtype": torch.bfloat16}
    inferer = FastSlidingWindowInferer(**kwargs, compile=True, compile_backend="eager")
    with torch.no_grad():
        first = inferer(x, wrapped)
        for p in net.parameters():
            p.mul_(-0.5)
        updated = inferer(x, wrapped)
        expected = FastSlidingWindowInferer(**kwargs)(x, net)
    assert isinstance(inferer._compiled[1], torch.nn.Sequential)
    torch.testing.assert_close(updated, expected, atol=1e-2, rtol=0)
    assert (updated - first).abs().max() > 0.1


def test_distributed_data_parallel_wrapper_is_unwrapped(monkeypatch, tmp_path):
    """A single-process gloo DDP: the inference copy is made of ``ddp.module`` and matches the plain network."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        net, x = _conv_net(3), _input((13, 9, 11))
        ddp = torch.nn.parallel.DistributedDataParallel(net)
        copied = _count_wrapper_copies(monkeypatch)
        with torch.no_grad():
            out = FastSlidingWindowInferer((6, 5, 4), sw_batch_size=4, channels_last=True)(x, ddp)
            reference = FastSlidingWindowInferer((6, 5, 4), sw_batch_size=4)(x, net)
    finally:
        dist.destroy_process_group()
    assert copied == [torch.nn.Sequential]
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)
