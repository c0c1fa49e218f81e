"""pipelines.predictors.exported: an exported network (TorchScript, ONNX in onnxruntime) called like the eager one,
and a bundle's inference from the exported file (``--exported_model``) giving the eager inference's outputs: the 2D
folder predictor (busi_lanet) and the 3D sliding-window evaluator (hvsmr_segmentation)."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, onnx_export
from PIL import Image

from pipelines.bundles import bundle_root
from pipelines.predictors import (
    OnnxNetwork,
    is_exported_network,
    load_exported_network,
    select_network,
)


class _TwoHeads(nn.Module):
    """``{"logits": (B, 2), "mask": (B, 1, H, W)}``, as LA-Net."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = torch.relu(self.conv(x))
        return {"logits": self.fc(f.mean((2, 3))), "mask": torch.sigmoid(f[:, :1])}


class _Levels(_TwoHeads):
    """One map per level, ``{"a": [(B, 1, H, W), (B, 1, H / 2, W / 2)], "b": [...]}``, as RetinaNet."""

    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:  # type: ignore[override]
        f = torch.relu(self.conv(x))
        return {"a": [f[:, :1], f[:, :1, ::2, ::2]], "b": [f[:, 1:], f[:, 1:, ::2, ::2]]}


def _onnx(module: nn.Module, path: Path, shape=(1, 1, 8, 12)) -> Path:
    torch.manual_seed(0)
    torch.onnx.export(module.eval(), (torch.rand(*shape),), str(path), dynamo=False)
    return path


@pytest.fixture
def x():
    return torch.randn(1, 1, 8, 12, generator=torch.Generator().manual_seed(0))


def test_onnx_network_returns_the_eager_outputs(tmp_path, x):
    torch.manual_seed(0)
    module = _TwoHeads().eval()
    path = _onnx(module, tmp_path / "m.onnx")
    with torch.no_grad():
        expected = module(x)
    out = OnnxNetwork(str(path), output_keys=["logits", "mask"], num_threads=1)(x)
    assert set(out) == {"logits", "mask"}
    for key in out:
        torch.testing.assert_close(out[key], expected[key], rtol=1e-5, atol=1e-6)
    plain = OnnxNetwork(str(path))(x)  # no names: the outputs in the file's order
    assert isinstance(plain, tuple) and len(plain) == 2
    torch.testing.assert_close(plain[0], expected["logits"], rtol=1e-5, atol=1e-6)


def test_onnx_network_single_output_and_lists(tmp_path, x):
    conv = nn.Conv2d(1, 2, 3, padding=1)
    single = OnnxNetwork(str(_onnx(conv, tmp_path / "c.onnx")), output_keys=["pred"])
    with torch.no_grad():
        torch.testing.assert_close(single(x), conv(x), rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    module = _Levels().eval()
    out = OnnxNetwork(str(_onnx(module, tmp_path / "l.onnx")), output_keys=["a", "b"])(x)
    with torch.no_grad():
        expected = module(x)
    assert [t.shape[2:] for t in out["b"]] == [(8, 12), (4, 6)]
    for key in ("a", "b"):
        for o, e in zip(out[key], expected[key]):
            torch.testing.assert_close(o, e, rtol=1e-5, atol=1e-6)


def test_onnx_network_errors_name_the_file(tmp_path, x):
    path = _onnx(_TwoHeads(), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="m.onnx has 2 outputs"):
        OnnxNetwork(str(path), output_keys=["logits", "mask", "extra"])
    with pytest.raises(ValueError, match=r"exported for input shape \[1, 1, 8, 12\], got \[1, 1, 8, 8\]"):
        OnnxNetwork(str(path))(x[..., :8])
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        load_exported_network(str(tmp_path / "missing.onnx"))
    with pytest.raises(ValueError, match="model.pt: expected a .ts/.onnx file"):  # a checkpoint, not an export
        load_exported_network(str(tmp_path / "model.pt"))


def test_onnx_network_copy_shares_the_session(tmp_path, x):
    network = OnnxNetwork(str(_onnx(_TwoHeads(), tmp_path / "m.onnx")), output_keys=["logits", "mask"])
    clone = copy.deepcopy(network)
    assert clone.session is network.session and clone is not network
    torch.testing.assert_close(clone(x)["mask"], network(x)["mask"])


def test_load_torchscript_and_select(tmp_path, x):
    torch.manual_seed(0)
    module = _TwoHeads().eval()
    torch.jit.script(module).save(str(tmp_path / "m.ts"))
    loaded = load_exported_network(str(tmp_path / "m.ts"))
    assert is_exported_network(loaded) and not is_exported_network(module) and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["mask"], module(x)["mask"])
    assert select_network(module, None) is module and select_network(module, "") is module
    assert is_exported_network(select_network(module, str(tmp_path / "m.ts")))


# ------------------------------------------------------------------------------- a bundle's inference from the file

LANET = Path(bundle_root("busi_lanet")) / "configs"
SIZE = 64


def _frames(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (rows, cols) in enumerate([(64, 64), (48, 80), (90, 70)]):
        r, c = np.mgrid[:rows, :cols]
        blob = 200 * np.exp(-((r - rows * (0.3 + 0.2 * i)) ** 2 + (c - cols / 2) ** 2) / (rows * 2.0))
        image = np.clip(blob + rng.normal(40, 10, (rows, cols)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"frame{i}.png")
    return folder


def _infer(inputs: Path, out: Path, pred_dir: Path, **override) -> list[dict]:
    wf = ConfigWorkflow(
        config_file=str(LANET / "inference.yaml"), meta_file=str(LANET / "metadata.json"), workflow_type="infer",
        input_dir=str(inputs), output_dir=str(out), pred_dir=str(pred_dir), image_size=SIZE, **override,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    with open(pred_dir / "predictions.csv") as f:
        return list(csv.DictReader(f))


def test_lanet_inference_from_exported_files_equals_eager(tmp_path):
    inputs = _frames(tmp_path / "inputs")
    torch.manual_seed(0)
    from networks.nets.lanet import LANet

    network = LANet(num_classes=2, backbone="resnet18", spatial_dims=2, in_channels=1)
    torch.save(network.state_dict(), tmp_path / "model.pt")
    common = dict(meta_file=str(LANET / "metadata.json"), config_file=str(LANET / "inference.yaml"),
                  ckpt_file=str(tmp_path / "model.pt"), net_id="network_def")
    ckpt_export(filepath=str(tmp_path / "model.ts"), **common)
    onnx_export(filepath=str(tmp_path / "model.onnx"), use_trace=True, input_shape=[1, 1, SIZE, SIZE],
                converter_kwargs={"dynamo": False}, **common)

    eager = _infer(inputs, tmp_path / "out", tmp_path / "eager", ckpt_path=str(tmp_path / "model.pt"))
    assert [r["status"] for r in eager] == ["ok"] * 3
    for name in ("model.ts", "model.onnx"):  # the checkpoint is not read for an exported network: a missing one
        pred_dir = tmp_path / name.replace(".", "_")
        rows = _infer(inputs, tmp_path / "out", pred_dir, ckpt_path=str(tmp_path / "missing.pt"),
                      exported_model=str(tmp_path / name))
        assert [(r["file"], r["prediction"], r["status"]) for r in rows] == [
            (r["file"], r["prediction"], r["status"]) for r in eager]
        for row, ref in zip(rows, eager):
            for key in ("prob_benign", "prob_malignant"):
                assert float(row[key]) == pytest.approx(float(ref[key]), abs=1e-5), (name, row["file"], key)
            mask = np.asarray(Image.open(pred_dir / row["file"].replace(".png", "_mask.png")))
            expected = np.asarray(Image.open(tmp_path / "eager" / row["file"].replace(".png", "_mask.png")))
            assert mask.shape == expected.shape and (mask != expected).mean() <= 1e-3, (name, row["file"])
    probs = [float(r["prob_malignant"]) for r in eager]
    assert max(probs) - min(probs) > 1e-4  # the frames give different outputs: the comparison can fail
    masks = [np.asarray(Image.open(tmp_path / "eager" / r["file"].replace(".png", "_mask.png"))) for r in eager]
    assert any(0 < (m > 0).mean() < 1 for m in masks)


def _inference_parser(configs: Path, overrides: dict) -> ConfigParser:
    """A bundle's inference.yaml + metadata with ``overrides`` applied."""
    parser = ConfigParser()
    parser.read_config(str(configs / "inference.yaml"))
    parser.read_meta(str(configs / "metadata.json"))
    for key, value in overrides.items():
        parser[key] = value
    return parser


HVSMR = Path(bundle_root("hvsmr_segmentation")) / "configs"
ROI = [32, 32, 16]
SMALL_3D = {"roi_size": ROI, "network_def#features": [8, 16, 32, 64]}  # the CPU preset's network, a small window


def test_3d_inference_from_exported_files_equals_eager(tmp_path):
    """hvsmr_segmentation's sliding-window inference (SupervisedEvaluator) from model.ts / model.onnx writes the
    eager network's label maps."""
    import nibabel as nib

    inputs = tmp_path / "volumes"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(40, 36, 20), (34, 44, 18)]):
        r = np.linalg.norm(np.indices(shape) - np.array(shape)[:, None, None, None] / 2, axis=0)
        volume = (100 * (r < 9 + 2 * i) + rng.normal(50, 10, shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.diag([1.2, 1.0, 2.0, 1.0])), str(inputs / f"case{i}.nii.gz"))
    parser = _inference_parser(HVSMR, SMALL_3D)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "model.pt")
    common = dict(meta_file=str(HVSMR / "metadata.json"), config_file=str(HVSMR / "inference.yaml"),
                  ckpt_file=str(tmp_path / "model.pt"), net_id="network_def", **SMALL_3D)
    ckpt_export(filepath=str(tmp_path / "model.ts"), **common)
    onnx_export(filepath=str(tmp_path / "model.onnx"), use_trace=True, input_shape=[1, 1, *ROI],
                converter_kwargs={"dynamo": False}, **common)

    def run(pred_dir: Path, **override) -> dict[str, np.ndarray]:
        wf = ConfigWorkflow(
            config_file=str(HVSMR / "inference.yaml"), meta_file=str(HVSMR / "metadata.json"), workflow_type="infer",
            input_dir=str(inputs), output_dir=str(tmp_path / "out"), pred_dir=str(pred_dir), num_workers=0,
            **SMALL_3D, **override,
        )
        wf.initialize()
        wf.run()
        wf.finalize()
        return {p.name: np.asarray(nib.load(str(p)).dataobj) for p in sorted(pred_dir.glob("*.nii.gz"))}

    eager = run(tmp_path / "eager", ckpt_path=str(tmp_path / "model.pt"))
    assert sorted(eager) == ["case0.nii.gz", "case1.nii.gz"]
    assert all(len(np.unique(v)) > 1 for v in eager.values())  # not one constant label: the comparison can fail
    for name in ("model.ts", "model.onnx"):
        out = run(tmp_path / name.replace(".", "_"), ckpt_path=str(tmp_path / "missing.pt"),
                  exported_model=str(tmp_path / name))
        assert sorted(out) == sorted(eager)
        for case, labels in eager.items():
            assert out[case].shape == labels.shape and (out[case] != labels).mean() <= 1e-3, (name, case)


DETECTION = Path(bundle_root("busi_detection")) / "configs"
#: the CPU preset's network on a 64 x 64 input, one channel
SMALL_DET = {"image_size": 64, "channels": 1, "depth": 18, "returned_layers": [1, 2, 3], "anchor_sizes": [16, 32, 64, 128],
             "network_def#fpn_channels": 32, "network_def#block_inplanes": [16, 32, 64, 128]}


def _detections(pred_dir: Path) -> dict[str, list[tuple[float, ...]]]:
    with open(pred_dir / "detections.csv") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, list[tuple[float, ...]]] = {}
    for r in rows:
        out.setdefault(r["file"], []).append(tuple(float(r[k]) for k in ("score", "x1", "y1", "x2", "y2")))
    return {k: sorted(v, reverse=True) for k, v in out.items()}


def test_detection_inference_from_exported_files_equals_eager(tmp_path):
    """busi_detection's inference from model.ts / model.onnx: the exported RetinaNet inside MONAI's detector (anchors,
    decoding and NMS in eager PyTorch) writes the eager run's boxes and scores."""
    inputs = _frames(tmp_path / "inputs")
    parser = _inference_parser(DETECTION, SMALL_DET)
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    with torch.no_grad():  # a random head scores ~0.01 everywhere; spread the scores so that many boxes are kept
        network.classification_head.cls_logits.weight.normal_(0.0, 0.05)
        network.classification_head.cls_logits.bias.zero_()
    torch.save(network.state_dict(), tmp_path / "model.pt")
    common = dict(meta_file=str(DETECTION / "metadata.json"), config_file=str(DETECTION / "inference.yaml"),
                  ckpt_file=str(tmp_path / "model.pt"), net_id="network_def", **SMALL_DET)
    ckpt_export(filepath=str(tmp_path / "model.ts"), **common)
    onnx_export(filepath=str(tmp_path / "model.onnx"), use_trace=True, input_shape=[1, 1, 64, 64],
                converter_kwargs={"dynamo": False}, **common)

    def run(pred_dir: Path, **override) -> dict[str, list[tuple[float, ...]]]:
        wf = ConfigWorkflow(
            config_file=str(DETECTION / "inference.yaml"), meta_file=str(DETECTION / "metadata.json"),
            workflow_type="infer", input_dir=str(inputs), output_dir=str(tmp_path / "out"), pred_dir=str(pred_dir),
            min_score=0.3, save_figures=False, clahe=False, **SMALL_DET, **override,
        )
        wf.initialize()
        wf.run()
        wf.finalize()
        return _detections(pred_dir)

    eager = run(tmp_path / "eager", ckpt_path=str(tmp_path / "model.pt"))
    assert sorted(eager) == ["frame0.png", "frame1.png", "frame2.png"]
    assert all(len(boxes) >= 5 for boxes in eager.values())
    assert max(b[0] for boxes in eager.values() for b in boxes) - min(b[0] for boxes in eager.values() for b in boxes) \
        > 0.01  # the scores differ: the comparison can fail
    for name in ("model.ts", "model.onnx"):
        out = run(tmp_path / name.replace(".", "_"), ckpt_path=str(tmp_path / "missing.pt"),
                  exported_model=str(tmp_path / name))
        assert sorted(out) == sorted(eager), name
        for frame, boxes in eager.items():
            assert abs(len(out[frame]) - len(boxes)) <= 1, (name, frame)  # NMS may differ at a tie
            for box in boxes[:10]:  # every strong eager box is found with its score and coordinates
                assert any(abs(o[0] - box[0]) <= 1e-4 and max(abs(a - b) for a, b in zip(o[1:], box[1:])) <= 0.05
                           for o in out[frame]), (name, frame, box)
