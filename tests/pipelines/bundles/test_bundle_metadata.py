"""Offline checks of bundle metadata against the repository copy of MONAI's metadata schema.

The metadata of every bundle in the checkout is verified by ``tests/bundles/test_bundle_matrix.py``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.bundles import metadata as bundle_check
from pipelines.bundles.metadata import (
    REPO_SCHEMA_FILE,
    SCHEMA_URL,
    verify_bundle_metadata,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
# md5 of the verbatim schema copied from Project-MONAI/project-monai.github.io public/schema/meta_schema_20240725.json
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"

# Minimal valid metadata mirroring a 3D BraTS MRI tumour segmentation bundle:
# 4 input channels (T1, T1ce, T2, FLAIR) -> 3 sigmoid output channels (TC, WT, ET).
BRATS_METADATA = {
    "schema": SCHEMA_URL,
    "version": "0.1.0",
    "changelog": {"0.1.0": "initial version"},
    "monai_version": "1.6.1",
    "pytorch_version": "2.4.0",
    "numpy_version": "1.26.4",
    "required_packages_version": {"nibabel": "5.2.1"},
    "task": "Volumetric (3D) segmentation of brain tumour sub-regions from multimodal MRI",
    "description": "Attention segmentation network for BraTS: tumour core, whole tumour and enhancing tumour.",
    "authors": "attention-mis contributors",
    "copyright": "Copyright (c) attention-mis contributors",
    "data_source": "BraTS 2018 challenge, https://www.med.upenn.edu/sbia/brats2018/data.html",
    "data_type": "nibabel",
    "image_classes": "4 channel data, T1, T1ce, T2 and FLAIR MRI",
    "label_classes": "3 channel data, channel 0 TC, channel 1 WT, channel 2 ET",
    "pred_classes": "3 channels (sigmoid), TC / WT / ET",
    "eval_metrics": {"val_mean_dice": 0.0},
    "intended_use": "This is an example, not to be used for diagnostic purposes",
    "references": ["Myronenko, A. 3D MRI brain tumor segmentation using autoencoder regularization, 2018."],
    "network_data_format": {
        "inputs": {
            "image": {
                "type": "image",
                "format": "magnitude",
                "modality": "MR",
                "num_channels": 4,
                "spatial_shape": ["8*n", "8*n", "8*n"],
                "dtype": "float32",
                "value_range": [],
                "is_patch_data": True,
                "channel_def": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"},
            }
        },
        "outputs": {
            "pred": {
                "type": "image",
                "format": "segmentation",
                "num_channels": 3,
                "spatial_shape": ["8*n", "8*n", "8*n"],
                "dtype": "float32",
                "value_range": [0, 1],
                "is_patch_data": True,
                "channel_def": {"0": "TC", "1": "WT", "2": "ET"},
            }
        },
    },
}


def _write(tmp_path: Path, metadata: dict, name: str = "metadata.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(metadata, indent=4), encoding="utf-8")
    return path


def _schema_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "schema" / REPO_SCHEMA_FILE.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_SCHEMA_FILE, dst)
    return dst


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------- the stored schema


def test_repo_schema_is_the_verbatim_monai_schema():
    assert REPO_SCHEMA_FILE == REPO_ROOT / "configs" / "schema" / "meta_schema_20240725.json"
    assert REPO_SCHEMA_FILE.is_file()
    assert _md5(REPO_SCHEMA_FILE) == SCHEMA_MD5
    schema = json.loads(REPO_SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2019-09/schema"
    import jsonschema

    jsonschema.validators.validator_for(schema).check_schema(schema)
    assert {"schema", "version", "monai_version", "network_data_format"} <= set(schema["required"])


# ------------------------------------------------------------------------------------------ verify_bundle_metadata


def test_valid_brats_metadata_passes(tmp_path):
    verify_bundle_metadata(str(_write(tmp_path, BRATS_METADATA)))
    # explicit schema file works as well
    verify_bundle_metadata(str(_write(tmp_path, BRATS_METADATA)), schema_file=str(REPO_SCHEMA_FILE))


@pytest.mark.parametrize(
    "key", ["schema", "version", "monai_version", "pytorch_version", "numpy_version", "required_packages_version",
            "task", "description", "authors", "copyright", "network_data_format"],
)
def test_missing_required_key_fails(tmp_path, key):
    meta = copy.deepcopy(BRATS_METADATA)
    del meta[key]
    with pytest.raises(ValueError, match=rf"\$: '{key}' is a required property"):
        verify_bundle_metadata(str(_write(tmp_path, meta)))


def test_wrong_num_channels_type_names_the_key(tmp_path):
    meta = copy.deepcopy(BRATS_METADATA)
    meta["network_data_format"]["inputs"]["image"]["num_channels"] = "4"
    with pytest.raises(ValueError) as exc:
        verify_bundle_metadata(str(_write(tmp_path, meta)))
    msg = str(exc.value)
    assert "$.network_data_format.inputs.image.num_channels: '4' is not of type 'integer'" in msg
    # the anyOf noise (number/string/boolean branches) is not reported
    assert "is not valid under any of the given schemas" not in msg


def test_missing_tensor_field_names_the_key(tmp_path):
    meta = copy.deepcopy(BRATS_METADATA)
    del meta["network_data_format"]["outputs"]["pred"]["dtype"]
    with pytest.raises(ValueError, match=r"\$\.network_data_format\.outputs\.pred: 'dtype' is a required property"):
        verify_bundle_metadata(str(_write(tmp_path, meta)))


def test_missing_inputs_and_bad_types_are_all_listed(tmp_path):
    meta = copy.deepcopy(BRATS_METADATA)
    del meta["network_data_format"]["inputs"]
    meta["version"] = 1
    meta["references"] = ["ok", 3]
    meta["network_data_format"]["outputs"]["pred"]["is_patch_data"] = "yes"
    meta["network_data_format"]["outputs"]["pred"]["spatial_shape"] = [96, 96, 9.5]
    with pytest.raises(ValueError) as exc:
        verify_bundle_metadata(str(_write(tmp_path, meta)))
    msg = str(exc.value)
    assert "(5 error(s))" in msg
    assert "$.network_data_format: 'inputs' is a required property" in msg
    assert "$.version: 1 is not of type 'string'" in msg
    assert "$.references[1]: 3 is not of type 'string'" in msg
    assert "$.network_data_format.outputs.pred.is_patch_data: 'yes' is not of type 'boolean'" in msg
    assert "$.network_data_format.outputs.pred.spatial_shape[2]: 9.5 is not of type 'string', 'integer'" in msg


def test_non_object_argument_reports_the_anyof_error(tmp_path):
    meta = copy.deepcopy(BRATS_METADATA)
    meta["network_data_format"]["inputs"]["image"] = [1, 2]
    with pytest.raises(ValueError, match=r"\$\.network_data_format\.inputs\.image: \[1, 2\] is not valid under any"):
        verify_bundle_metadata(str(_write(tmp_path, meta)))


def test_extra_network_data_format_is_checked(tmp_path):
    meta = copy.deepcopy(BRATS_METADATA)
    meta["encoder_data_format"] = {"inputs": {}}
    with pytest.raises(ValueError, match=r"\$\.encoder_data_format: 'outputs' is a required property"):
        verify_bundle_metadata(str(_write(tmp_path, meta)))


def test_invalid_json_is_a_value_error(tmp_path):
    path = tmp_path / "metadata.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        verify_bundle_metadata(str(path))


def test_missing_files_raise_file_not_found(tmp_path, monkeypatch):
    meta_file = str(_write(tmp_path, BRATS_METADATA))
    with pytest.raises(FileNotFoundError, match="nope.json"):
        verify_bundle_metadata(str(tmp_path / "nope.json"))
    missing_schema = tmp_path / "no_schema.json"
    with pytest.raises(FileNotFoundError, match="no_schema.json"):
        verify_bundle_metadata(meta_file, schema_file=str(missing_schema))
    # non-editable install: the default repo path does not exist -> FileNotFoundError naming it
    gone = tmp_path / "site-packages" / "configs" / "schema" / REPO_SCHEMA_FILE.name
    monkeypatch.setattr(bundle_check, "REPO_SCHEMA_FILE", gone)
    with pytest.raises(FileNotFoundError) as exc:
        verify_bundle_metadata(meta_file)
    assert str(gone) in str(exc.value)


# ------------------------------------------------------------------------------- MONAI's verify_metadata, offline


def test_monai_verify_metadata_offline_api(tmp_path, monkeypatch):
    from monai.apps import utils as monai_app_utils
    from monai.bundle import verify_metadata

    def _no_network(*args, **kwargs):  # any download attempt fails the test
        raise AssertionError(f"verify_metadata tried to download: {args}")

    monkeypatch.setattr(monai_app_utils, "_download_with_progress", _no_network)
    meta_file = _write(tmp_path, BRATS_METADATA)
    schema = _schema_copy(tmp_path)
    verify_metadata(meta_file=str(meta_file), filepath=str(schema), hash_val=SCHEMA_MD5, hash_type="md5")
    verify_metadata(meta_file=str(meta_file), filepath=str(schema))  # no hash: also no download
    assert _md5(schema) == SCHEMA_MD5  # the existing file is used as-is, not rewritten

    bad = copy.deepcopy(BRATS_METADATA)
    bad["network_data_format"]["inputs"]["image"]["num_channels"] = "4"
    with pytest.raises(ValueError):
        verify_metadata(meta_file=str(_write(tmp_path, bad, "bad.json")), filepath=str(schema))


def test_monai_verify_metadata_offline_cli(tmp_path):
    meta_file = _write(tmp_path, BRATS_METADATA)
    schema = _schema_copy(tmp_path)
    env = dict(os.environ)
    # make any network attempt fail fast instead of hanging
    env.update({"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
                "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": ""})
    cmd = [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(meta_file),
           "--filepath", str(schema), "--hash_val", SCHEMA_MD5, "--hash_type", "md5"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "metadata is verified with no error" in proc.stdout + proc.stderr
    assert "skipped downloading" in proc.stdout + proc.stderr
    assert _md5(schema) == SCHEMA_MD5
