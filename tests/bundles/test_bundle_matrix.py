"""One sweep over every bundle in ``bundles/``: a new bundle folder is covered by adding it, not a test.

For each bundle (``pipelines.bundles.list_bundles()``):

(a) ``configs/metadata.json`` verifies offline against the repository copy of MONAI's metadata schema;
(b) every config parses: ``train.yaml`` and ``inference.yaml`` on their own, every other YAML (an overlay such as
    ``evaluate.yaml``) merged onto ``train.yaml`` (a YAML that defines ``network_def`` itself is taken as standalone),
    every ``@`` reference in the result names an existing id, every run id the file declares exists and is a list of
    expressions, and ``network_def`` instantiates; no dataset is built;
(c) MONAI's ``verify_net_in_out`` passes on ``inference.yaml`` with a small window (``roi_size`` / image size
    overridden in the config and in the metadata's input shape); for a network with several outputs (LA-Net's
    ``{"logits", "mask"}``) each output of ``network_data_format`` is checked in turn;
(d) MONAI's ``ckpt_export`` writes a TorchScript file from a freshly saved random-weights ``model.pt`` whose outputs
    (each entry of a dict output) match the eager network's on a small input, with the bundle's metadata inside.

The ONNX half of the export sweep (MONAI's ``onnx_export``, onnxruntime against eager) is
``tests/bundles/test_bundle_onnx_export.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out
from monai.bundle.reference_resolver import ReferenceResolver
from monai.data import load_net_with_metadata

from pipelines.bundles import bundle_root, list_bundles, verify_bundle_metadata

BUNDLES = list_bundles()
STANDALONE = ("train.yaml", "inference.yaml")
#: MONAI's run ids (``run``, ``initialize``, ``finalize``) and the ones the bundles' commands use
RUN_IDS = ("run", "initialize", "finalize", "training", "evaluating", "inference")
#: small windows per number of spatial dims: the 3D networks need depth divisible by 8, LA-Net a multiple of 32
SMALL_SHAPE = {2: [64, 64], 3: [32, 32, 16]}


def _configs(bundle: str) -> Path:
    return Path(bundle_root(bundle)) / "configs"


CONFIG_CASES = [(b, f.name) for b in BUNDLES for f in sorted(_configs(b).glob("*.yaml"))]


def _files(bundle: str, name: str) -> list[str]:
    """The config files a run of ``name`` reads: itself when standalone, else ``[train.yaml, name]``."""
    path = _configs(bundle) / name
    own = ConfigParser.load_config_file(str(path))
    if name in STANDALONE or "network_def" in own:
        return [str(path)]
    if name == "multi_gpu_evaluate.yaml":  # an overlay of train.yaml + evaluate.yaml, as it runs
        return [str(_configs(bundle) / "train.yaml"), str(_configs(bundle) / "evaluate.yaml"), str(path)]
    return [str(_configs(bundle) / "train.yaml"), str(path)]


def _leaves(config: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(config, (dict, list)):
        items = config.items() if isinstance(config, dict) else enumerate(config)
        return [leaf for k, v in items for leaf in _leaves(v, f"{prefix}#{k}" if prefix else str(k))]
    return [(prefix, config)]


def _small_overrides(bundle: str) -> dict[str, Any]:
    """Config and metadata overrides that shrink the network's input to :data:`SMALL_SHAPE`."""
    meta = ConfigParser.load_config_file(str(_configs(bundle) / "metadata.json"))
    shape = SMALL_SHAPE[len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"])]
    overrides: dict[str, Any] = {"_meta_#network_data_format#inputs#image#spatial_shape": shape}
    inference = ConfigParser.load_config_file(str(_configs(bundle) / "inference.yaml"))
    if "roi_size" in inference:  # the 3D networks are built for their window (network_def#patch_size: @roi_size)
        overrides["roi_size"] = shape
    return overrides


def _parser(bundle: str, overrides: dict[str, Any]) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle) / "inference.yaml"))
    parser.read_meta(str(_configs(bundle) / "metadata.json"))
    for key, value in overrides.items():
        parser[key] = value
    return parser


class SelectOutput(torch.nn.Module):
    """``network(x)[key]``: one entry of a network with a dict output, for MONAI's single-output checks."""

    def __init__(self, network: torch.nn.Module, key: str) -> None:
        super().__init__()
        self.network, self.key = network, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(x)[self.key]
        # one map per pyramid level (RetinaNet, busi_detection): the levels flattened side by side, (B, C, sum H_l W_l)
        return torch.cat([o.flatten(2) for o in out], dim=2) if isinstance(out, (list, tuple)) else out


def test_every_bundle_is_swept():
    assert {"brats_pam_segmentation", "malc_segmentation", "hvsmr_segmentation", "busi_lanet"} <= set(BUNDLES)
    for bundle in BUNDLES:
        names = {name for b, name in CONFIG_CASES if b == bundle}
        assert {"train.yaml", "inference.yaml"} <= names, bundle


# ------------------------------------------------------------------------------------------------ (a) metadata


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_verifies_offline(bundle):
    verify_bundle_metadata(str(_configs(bundle) / "metadata.json"))


# ------------------------------------------------------------------------------------------- (b) configs parse


@pytest.mark.parametrize("bundle, name", CONFIG_CASES, ids=[f"{b}-{n}" for b, n in CONFIG_CASES])
def test_config_parses_and_resolves_network_def(bundle, name):
    files = _files(bundle, name)
    parser = ConfigParser()
    parser.read_config(files)
    parser.read_meta(str(_configs(bundle) / "metadata.json"))

    refs = [(i, r) for i, v in _leaves(parser.get()) if isinstance(v, str) for r in ReferenceResolver.match_refs_pattern(v)]
    assert refs, "no reference found: the config was not read"
    missing = [f"{i} -> @{r.replace('::', '#')}" for i, r in refs if r not in parser]
    assert not missing, f"{files}: references to missing ids: {missing}"

    own = ConfigParser.load_config_file(files[-1])
    declared = [i for i in RUN_IDS if i in own]
    assert [i for i in RUN_IDS if i in parser], f"{files} define no run id"
    for run_id in declared:
        value = parser.get(run_id)
        while isinstance(value, str) and value.startswith("@"):  # e.g. evaluating: "@run"
            value = parser.get(value[1:])
        assert isinstance(value, list) and all(isinstance(e, str) for e in value), f"{run_id}: {value!r}"

    network = parser.get_parsed_content("network_def")
    assert isinstance(network, torch.nn.Module)
    assert sum(p.numel() for p in network.parameters()) > 1000


@pytest.mark.parametrize("bundle", BUNDLES)
def test_training_forward_pass_follows_amp_and_channels_last_on_every_device(bundle):
    """MONAI's trainer autocasts on CUDA only, so ``amp`` reaches a CPU through the project's code: either the trainer
    runs ``pipelines.inferers.AutocastInferer`` with the bundle's ``amp`` / ``channels_last``, or a custom iteration
    whose module autocasts through ``pipelines.engines.precision.autocast``. With ``channels_last`` the trained
    network (before any DDP wrapper) has channels-last convolution weights and layout-keeping instance norms."""
    import importlib

    from networks.blocks.norm import LayoutPreservingInstanceNorm
    from pipelines.engines import precision
    from pipelines.inferers import AutocastInferer

    parser = ConfigParser()
    parser.read_config(str(_configs(bundle) / "train.yaml"))
    trainer = parser.get("train#trainer")
    update = trainer.get("iteration_update")
    if update is None:
        assert trainer.get("inferer") == "@train#inferer", f"{bundle}: the trainer must run train#inferer"
        inferer = parser.get_parsed_content("train#inferer")
        assert isinstance(inferer, AutocastInferer)
        assert inferer.amp is parser.get_parsed_content("amp")
        assert inferer.channels_last is bool(parser.get_parsed_content("channels_last"))
    else:
        while isinstance(update, str):
            update = parser.get(update[1:])
        module = importlib.import_module(update["_target_"].rsplit(".", 1)[0])
        assert getattr(module, "autocast", None) is precision.autocast, f"{bundle}: {update['_target_']}"
    if "channels_last" in parser:
        parser["channels_last"] = True
        network = parser.get_parsed_content("network")
        convs = [m for m in network.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
        layout = torch.channels_last_3d if isinstance(convs[0], torch.nn.Conv3d) else torch.channels_last
        assert all(c.weight.is_contiguous(memory_format=layout) for c in convs if c.weight.shape[1] > 1)
        assert not any(isinstance(m, torch.nn.modules.instancenorm._InstanceNorm) for m in network.modules())
        if any(isinstance(m, LayoutPreservingInstanceNorm) for m in network.modules()):
            assert parser.get_parsed_content("network_def") is network


# --------------------------------------------------------------------------------------- (c) verify_net_in_out


@pytest.mark.parametrize("bundle", BUNDLES)
def test_verify_net_in_out(bundle):
    config_file, meta_file = str(_configs(bundle) / "inference.yaml"), str(_configs(bundle) / "metadata.json")
    overrides = _small_overrides(bundle)
    outputs = ConfigParser.load_config_file(meta_file)["network_data_format"]["outputs"]
    common = dict(meta_file=meta_file, config_file=config_file, device="cpu", **overrides)
    if list(outputs) == ["pred"]:
        torch.manual_seed(0)
        verify_net_in_out(net_id="network_def", **common)
        return
    for key, fmt in outputs.items():  # one network, several outputs: check each against its entry
        torch.manual_seed(0)
        verify_net_in_out(
            net_id="_selected_output",
            _selected_output={"_target_": SelectOutput, "network": "@network_def", "key": key},
            **{"_meta_#network_data_format#outputs#pred": fmt},
            **common,
        )
    with pytest.raises(ValueError, match="output channel number"):  # the check does compare channels
        wrong = dict(outputs[key], num_channels=outputs[key]["num_channels"] + 1)
        verify_net_in_out(
            net_id="_selected_output",
            _selected_output={"_target_": SelectOutput, "network": "@network_def", "key": key},
            **{"_meta_#network_data_format#outputs#pred": wrong},
            **common,
        )


# -------------------------------------------------------------------------------------------- (d) ckpt_export


@pytest.mark.parametrize("bundle", BUNDLES)
def test_ckpt_export_matches_the_eager_network(bundle, tmp_path):
    config_file, meta_file = str(_configs(bundle) / "inference.yaml"), str(_configs(bundle) / "metadata.json")
    overrides = _small_overrides(bundle)
    torch.manual_seed(0)
    network = _parser(bundle, overrides).get_parsed_content("network_def").eval()
    torch.save(network.state_dict(), tmp_path / "model.pt")  # the form CheckpointSaver writes for the best model
    config_overrides = {k: v for k, v in overrides.items() if not k.startswith("_meta_")}

    torch.manual_seed(1)  # the exported network gets other initial weights: the checkpoint must replace them
    ckpt_export(
        net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(tmp_path / "model.pt"),
        meta_file=meta_file, config_file=config_file, **config_overrides,
    )
    scripted, meta, extra = load_net_with_metadata(str(tmp_path / "model.ts"), more_extra_files=("inference.json",))
    assert meta["version"] == ConfigParser.load_config_file(meta_file)["version"]
    assert "network_def" in ConfigParser.load_config_file(str(_configs(bundle) / "inference.yaml"))
    assert b"network_def" in extra["inference.json"]

    image = meta["network_data_format"]["inputs"]["image"]
    shape = overrides["_meta_#network_data_format#inputs#image#spatial_shape"]
    x = torch.randn(2, image["num_channels"], *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, out = network(x), scripted(x)
    if isinstance(expected, dict):
        assert set(out) == set(expected) == set(meta["network_data_format"]["outputs"])
        # a list entry (one map per pyramid level, RetinaNet) is compared level by level
        assert all(len(out[k]) == len(v) for k, v in expected.items() if isinstance(v, list))
        expected, out = ({f"{k}_{i}": t for k, v in d.items() for i, t in enumerate(v if isinstance(v, list) else [v])}
                         for d in (expected, out))
    else:
        expected, out = {"pred": expected}, {"pred": out}
    for key, value in expected.items():
        assert value.abs().max() > 0
        torch.testing.assert_close(out[key], value, atol=1e-5, rtol=1e-5)
