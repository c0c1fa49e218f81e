"""Every bundle's ``multi_gpu_train.yaml`` / ``multi_gpu_evaluate.yaml`` (config level, no process group): the overlays
parse and resolve on their base configs, join the process group in ``initialize`` and leave it in ``finalize``, shard
training (shuffled, padded) and validation (not padded) with ``DistributedSampler``, wrap the training network in DDP
(and never call a method of the wrapper), and leave logging, TensorBoard and the best-model saver to rank 0. Without
torchrun the overlays build one process's objects (unwrapped network on the CPU)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.bundle.reference_resolver import ReferenceResolver

from pipelines.bundles import bundle_root, list_bundles

#: the bundles that must ship both overlays
EXPECTED = {"brats_pam_segmentation", "malc_segmentation", "hvsmr_segmentation", "busi_lanet",
            "cxr_lung_segmentation", "cxr_attention_classification", "busi_joint_segcls", "busi_detection"}
#: bundles whose DDP wrapper is around the detector (MONAI's RetinaNetDetector reads attributes of the plain `network`)
DETECTORS = {"busi_detection"}
OVERLAID = sorted(b for b in list_bundles()
                  if (Path(bundle_root(b)) / "configs" / "multi_gpu_train.yaml").is_file())
#: handler classes that only rank 0 may run (console / TensorBoard output, the best model)
RANK0_ONLY = {"StatsHandler", "TensorBoardStatsHandler", "TensorBoardImageHandler", "ProgressBar",
              "OptimizerParamsLogger", "CheckpointSaver", "LANetTensorBoardHandler", "CAMTensorBoardHandler",
              "JointSegClsTensorBoardHandler", "DetectionTensorBoardHandler"}
#: a method or attribute of the DDP-wrapped network other than its parameters (DDP does not forward them)
WRAPPER_ATTRIBUTE = re.compile(r"@network\.(?!parameters\(\))")
DETECTOR_WRAPPER_ATTRIBUTE = re.compile(r"@ddp_detector\.")
INIT, FINAL = "pipelines.bundles.distributed.initialize()", "pipelines.bundles.distributed.finalize()"


def _configs(bundle: str) -> Path:
    return Path(bundle_root(bundle)) / "configs"


def _parser(bundle: str, names: list[str], **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(_configs(bundle) / n) for n in names])
    for key, value in overrides.items():
        parser[key] = value
    return parser


def _leaves(config, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(config, (dict, list)):
        items = config.items() if isinstance(config, dict) else enumerate(config)
        return [leaf for k, v in items for leaf in _leaves(v, f"{prefix}#{k}" if prefix else str(k))]
    return [(prefix, config)]


@pytest.fixture
def rank(request, monkeypatch):
    """torchrun's rank variables without a rendezvous address: no group is joined, the rank is the environment's."""
    for key in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RANK", str(request.param))
    monkeypatch.setenv("WORLD_SIZE", "2")
    return request.param


def test_every_bundle_ships_both_overlays():
    assert EXPECTED <= set(OVERLAID)
    for bundle in OVERLAID:
        assert (_configs(bundle) / "multi_gpu_evaluate.yaml").is_file(), bundle


def _check_samplers(parser: ConfigParser, train: bool) -> None:
    if train:
        assert parser["train#dataloader#sampler"] == "@train#sampler"
        sampler = parser["train#sampler"]
        assert sampler["_target_"] == "pipelines.bundles.distributed.data_sampler"
        assert (sampler["dataset"], sampler["shuffle"], sampler["even_divisible"]) == ("@train#dataset", True, True)
        assert parser["train#dataloader#shuffle"] == "$@train#sampler is None"  # the sampler shuffles under torchrun
    sampler = parser["validate#sampler"]
    assert parser["validate#dataloader#sampler"] == "@validate#sampler"
    assert (sampler["dataset"], sampler["shuffle"], sampler["even_divisible"]) == ("@validate#dataset", False, False)


def _check_run_ids(parser: ConfigParser) -> None:
    assert [INIT in e for e in parser["initialize"]] == [True]
    assert [FINAL in e for e in parser["finalize"]] == [True]
    assert "$import pipelines.bundles.distributed" in parser["imports"]


def _check_handler_lists(parser: ConfigParser, rank: int, sections: tuple[str, ...]) -> None:
    """Items of a handler list that only rank 0 runs are disabled exactly on the other ranks; the others never."""
    for section in sections:
        raw = parser[f"{section}#handlers"]
        if isinstance(raw, str):  # a recipe function (pipelines.handlers.recipes), rank-aware itself
            assert raw.startswith("$pipelines.handlers.recipes."), raw
            continue
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                continue
            name = str(item["_target_"]).rsplit(".", 1)[-1]
            disabled = "_disabled_" in item and parser.get_parsed_content(f"{section}#handlers#{i}#_disabled_")
            assert bool(disabled) == (name in RANK0_ONLY and rank > 0), (section, i, name, rank)


@pytest.mark.parametrize("rank", [0, 1], indirect=True)
@pytest.mark.parametrize("bundle", OVERLAID)
def test_multi_gpu_train_overlay(bundle, rank):
    stage = ["stage1.yaml"] if (_configs(bundle) / "stage1.yaml").is_file() else []
    for extra in ([], stage) if stage else ([],):
        parser = _parser(bundle, ["train.yaml", *extra, "multi_gpu_train.yaml"], show_progress=True)
        refs = [r for _, v in _leaves(parser.get()) if isinstance(v, str) for r in ReferenceResolver.match_refs_pattern(v)]
        assert not [r for r in refs if r not in parser], "references to missing ids"
        _check_run_ids(parser)
        _check_samplers(parser, train=True)
        _check_handler_lists(parser, rank, ("train", "validate"))
        wrapper = DETECTOR_WRAPPER_ATTRIBUTE if bundle in DETECTORS else WRAPPER_ATTRIBUTE
        wrapper_calls = [(i, v) for i, v in _leaves(parser.get()) if isinstance(v, str) and wrapper.search(v)]
        assert not wrapper_calls, "DDP does not forward these to the network; use @network_def"
        if bundle in DETECTORS:  # trainer and validator run the wrapped detector; `network` stays plain
            assert "distributed.wrap(@detector," in parser["ddp_detector"]
            assert parser["train#trainer#network"] == parser["validate#evaluator#network"] == "@ddp_detector"
            assert parser["network"] == ConfigParser.load_config_file(str(_configs(bundle) / "train.yaml"))["network"]
        else:
            assert re.search(r"distributed\.wrap\((pipelines\.engines\.prepare_network\()?@network_def", parser["network"])

    # each rank its own random stream (seed + rank), so the ranks' augmentations differ
    parser.get_parsed_content("determinism")
    expected = torch.rand(3, generator=torch.Generator().manual_seed(parser.get_parsed_content("seed") + rank))
    assert torch.equal(torch.rand(3), expected)

    # no torchrun group: one process's objects
    network = parser.get_parsed_content("network")
    assert network is parser.get_parsed_content("network_def")
    if bundle in DETECTORS:
        assert parser.get_parsed_content("ddp_detector") is parser.get_parsed_content("detector")
    if not torch.cuda.is_available():
        assert parser.get_parsed_content("device") == torch.device("cpu")


@pytest.mark.parametrize("rank", [0, 1], indirect=True)
@pytest.mark.parametrize("bundle", OVERLAID)
def test_multi_gpu_evaluate_overlay(bundle, rank):
    parser = _parser(bundle, ["train.yaml", "evaluate.yaml", "multi_gpu_evaluate.yaml"])
    refs = [r for _, v in _leaves(parser.get()) if isinstance(v, str) for r in ReferenceResolver.match_refs_pattern(v)]
    assert not [r for r in refs if r not in parser], "references to missing ids"
    _check_run_ids(parser)
    _check_samplers(parser, train=False)
    assert parser["network"] == ConfigParser.load_config_file(str(_configs(bundle) / "train.yaml"))["network"]
    if "validate#stats" in parser:  # the evaluation's console metrics: rank 0 only
        assert (parser.get_parsed_content("validate#stats") is None) == (rank > 0)
    raw = parser["validate#handlers"]
    if isinstance(raw, str) and "recipes.evaluation_handlers" not in raw:
        assert "StatsHandler" not in raw  # any console handler is a separate, rank-0 id
