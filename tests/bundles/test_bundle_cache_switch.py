"""Every bundle's ``cache`` and ``progress`` keys, at config level (datasets built, nothing trained)."""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import ConfigParser
from monai.data import CacheDataset, DataLoader, Dataset, ThreadDataLoader

from pipelines.data import DiskCacheDataset
from pipelines.data.datasets import cached_transforms

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ("brats_pam_segmentation", "malc_segmentation", "hvsmr_segmentation", "busi_lanet", "busi_joint_segcls",
           "cxr_lung_segmentation", "cxr_attention_classification", "busi_detection")
CLASSES = {"none": Dataset, "memory": CacheDataset, "disk": DiskCacheDataset}

_LOAD_3D = ["LoadImaged", "EnsureChannelFirstd", "Orientationd"]
_NORM_3D = ["NormalizeIntensityd", "EnsureTyped", "SpatialPadd"]
# the deterministic head of each training recipe (train.yaml defaults) that the caches keep: everything before the
# first random transform. What follows it cannot move before it without changing the result (LA-Net's random resized
# crop works on the original image; intensity scaling and z-scoring come after the random intensity and affine
# steps, whose zero padding they would otherwise shift).
TRAIN_HEADS = {
    "brats_pam_segmentation": [*_LOAD_3D, "ConvertToMultiChannelBasedOnBratsClassesd", *_NORM_3D],
    "malc_segmentation": [*_LOAD_3D, *_NORM_3D],
    "hvsmr_segmentation": [*_LOAD_3D, *_NORM_3D],
    "busi_lanet": ["LoadBUSId"],
    "busi_joint_segcls": ["LoadBUSId", "Resized", "AsDiscreted"],
    "cxr_lung_segmentation": ["LoadBUSId", "DeleteItemsd", "Resized", "AsDiscreted"],
    "cxr_attention_classification": ["LoadBUSId", "DeleteItemsd", "_LungBoxToGridd", "ClassRegiond", "Resized"],
    "busi_detection": ["LoadFramed", "EnsureTyped", "EnsureTyped", "StandardizeEmptyBoxd", "ScannerFrameCropd",
                       "ResizeBoxd", "CLAHEd"],
}


def _parser(bundle: str, tmp_path: Path, cpu: bool = True, **overrides) -> ConfigParser:
    configs = REPO / "bundles" / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.yaml"), *([str(configs / "cpu.yaml")] if cpu else [])])
    parser["output_dir"] = str(tmp_path / "run")
    parser["cache_rate"] = 0.0  # config level: no cache filled
    for key, value in overrides.items():
        parser[key] = value
    return parser


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("cache", sorted(CLASSES))
def test_cache_key_chooses_the_dataset(bundle, cache, tmp_path):
    parser = _parser(bundle, tmp_path, cache=cache)
    for split in ("train", "validate"):
        assert type(parser.get_parsed_content(f"{split}#dataset")) is CLASSES[cache]
    if cache == "disk":
        ds = parser.get_parsed_content("train#dataset")
        assert Path(ds.cache_dir) == tmp_path / "run" / "cache"  # default <output_dir>/cache
        assert ds.transform_hash  # entries keyed by the transform settings
        assert not (Path(parser.get_parsed_content("dataset_dir")) / "cache").exists()


@pytest.mark.parametrize("bundle", BUNDLES)
def test_progress_key(bundle, tmp_path):
    assert _parser(bundle, tmp_path).get_parsed_content("show_progress") is False  # pytest: not a terminal
    assert _parser(bundle, tmp_path, progress="on").get_parsed_content("show_progress") is True
    assert _parser(bundle, tmp_path, progress=True).get_parsed_content("show_progress") is True  # YAML `on`
    assert _parser(bundle, tmp_path, progress="off").get_parsed_content("show_progress") is False


@pytest.mark.parametrize("bundle", BUNDLES)
def test_training_recipe_caches_its_deterministic_head(bundle, tmp_path):
    transform = _parser(bundle, tmp_path, cpu=False).get_parsed_content("train#preprocessing")
    head = [type(t).__name__ for t in cached_transforms(transform)]
    assert head == TRAIN_HEADS[bundle]
    rest = transform.flatten().transforms[len(head)]
    assert type(rest).__name__.startswith("Rand")


@pytest.mark.parametrize("bundle", BUNDLES)
def test_training_loader(bundle, tmp_path):
    """2D bundles: ThreadDataLoader (cached items, light per-item work: the thread prepares the next batch during
    the step); 3D bundles: DataLoader with worker processes for the random 3D crops and rotations."""
    loader = _parser(bundle, tmp_path, cache="none").get_parsed_content("train#dataloader")
    expected = DataLoader if bundle.endswith("_segmentation") and bundle != "cxr_lung_segmentation" else ThreadDataLoader
    assert type(loader) is expected
