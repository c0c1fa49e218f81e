"""Tests of the deterministic demo-data generators (layouts, determinism, learnable structure)."""

from __future__ import annotations

import csv
import functools
import json
import os
import time

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.measure import regionprops

from pipelines.data import (
    BRATS_MODALITIES,
    DEMO_MARKER,
    demo,
    demo_root,
    ensure_demo_dataset,
    make_brats_demo,
    make_busi_demo,
    make_chestxray14_demo,
    make_hvsmr_demo,
    make_malc_demo,
)

BRATS_SHAPE = (48, 48, 40)


def _load(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def _brats_case(root: str, index: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    case = f"Brats18_DEMO_{index}_1"
    prefix = os.path.join(root, case, case)
    images = {m: _load(f"{prefix}_{m}.nii.gz") for m in BRATS_MODALITIES}
    return images, _load(f"{prefix}_seg.nii.gz"), nib.load(f"{prefix}_seg.nii.gz").affine


def _gray(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


@pytest.fixture(scope="module")
def brats_root(tmp_path_factory):
    return make_brats_demo(str(tmp_path_factory.mktemp("brats")), num_cases=4, shape=BRATS_SHAPE, seed=0)


@pytest.fixture(scope="module")
def busi_root(tmp_path_factory):
    return make_busi_demo(str(tmp_path_factory.mktemp("busi")), num_per_class=8, size=96, seed=0)


@pytest.fixture(scope="module")
def cxr_root(tmp_path_factory):
    return make_chestxray14_demo(str(tmp_path_factory.mktemp("cxr")), num_patients=24, size=96, seed=0)


# ------------------------------------------------------------------------------------- BraTS
def test_brats_layout_and_types(brats_root):
    assert sorted(os.listdir(brats_root)) == [f"Brats18_DEMO_{i}_1" for i in range(4)]
    assert sorted(os.listdir(os.path.join(brats_root, "Brats18_DEMO_2_1"))) == sorted(
        f"Brats18_DEMO_2_1_{k}.nii.gz" for k in ("t1", "t1ce", "t2", "flair", "seg")
    )
    images, seg, _ = _brats_case(brats_root, 0)
    for image in images.values():
        assert image.dtype == np.float32 and image.shape == BRATS_SHAPE
    assert seg.dtype == np.uint8 and seg.shape == BRATS_SHAPE


def test_brats_labels_and_lgg_case(brats_root):
    for index in range(4):
        images, seg, _ = _brats_case(brats_root, index)
        values = set(np.unique(seg).tolist())
        # case 3 is LGG-like: no necrotic core
        assert values == ({0, 2, 4} if index == 3 else {0, 1, 2, 4})
        brain = images["t1"] > 0
        for image in images.values():  # zero outside the brain in every modality, positive inside
            assert np.array_equal(image > 0, brain)
        assert not np.any(seg[~brain]) and not brain[0, 0, 0]


def test_brats_affines_ras_and_lps(brats_root):
    for index in range(4):
        images, seg, affine = _brats_case(brats_root, index)
        case = f"Brats18_DEMO_{index}_1"
        t1 = nib.load(os.path.join(brats_root, case, f"{case}_t1.nii.gz"))
        np.testing.assert_allclose(t1.affine, affine)
        expected = ("R", "A", "S") if index % 2 == 0 else ("L", "P", "S")
        assert nib.aff2axcodes(affine) == expected
        np.testing.assert_allclose(np.abs(np.diag(affine)[:3]), 1.0)
        assert np.all(affine[:3, 3] != 0)
        assert t1.header.get_zooms() == (1.0, 1.0, 1.0)


def test_brats_learnable_contrasts(brats_root):
    for index in range(4):
        images, seg, _ = _brats_case(brats_root, index)
        brain = images["t1"] > 0
        normal = brain & (seg == 0)

        def mean(modality, region):
            return float(images[modality][region].mean())

        edema, enhancing, necrosis = seg == 2, seg == 4, seg == 1
        assert mean("t1ce", enhancing) > 1.4 * mean("t1ce", edema)
        assert mean("flair", edema) > 1.6 * mean("flair", normal)
        assert mean("t2", edema) > 1.6 * mean("t2", normal)
        assert mean("t1", edema | enhancing) < 0.92 * mean("t1", normal)
        if necrosis.any():
            assert mean("t1ce", necrosis) < 0.75 * mean("t1ce", edema)
            assert mean("t2", necrosis) > 1.1 * mean("t2", edema)
            assert mean("flair", necrosis) < 0.8 * mean("flair", edema)
            # the enhancing ring around the necrotic core is at least 2 voxels thick
            depth = ndimage.distance_transform_edt(seg != 0)
            core_depth = ndimage.distance_transform_edt(np.isin(seg, (1, 4)))
            assert core_depth[necrosis].min() > 2.0
            assert depth[necrosis].min() > 2.0
        # a big tumour: the whole tumour spans at least 30% of every axis
        extent = [np.ptp(ax) + 1 for ax in np.nonzero(seg)]
        assert all(e >= 0.3 * s for e, s in zip(extent, BRATS_SHAPE)), extent


def test_brats_deterministic(brats_root, tmp_path):
    same = make_brats_demo(str(tmp_path / "same"), num_cases=2, shape=BRATS_SHAPE, seed=0)
    other = make_brats_demo(str(tmp_path / "other"), num_cases=2, shape=BRATS_SHAPE, seed=1)
    for index in range(2):  # a case does not depend on how many cases are generated
        ref_images, ref_seg, ref_affine = _brats_case(brats_root, index)
        images, seg, affine = _brats_case(same, index)
        for m in BRATS_MODALITIES:
            assert images[m].tobytes() == ref_images[m].tobytes()
        assert seg.tobytes() == ref_seg.tobytes()
        np.testing.assert_array_equal(affine, ref_affine)
        other_images, other_seg, _ = _brats_case(other, index)
        assert not np.array_equal(other_seg, ref_seg)
        assert not np.array_equal(other_images["t1"], ref_images["t1"])


# ------------------------------------------------------------------------------ MALC / HVSMR
def test_malc_layout_labels_and_intensities(tmp_path):
    root = make_malc_demo(str(tmp_path / "malc"), num_cases=2, shape=(40, 48, 40), seed=3)
    assert sorted(os.listdir(os.path.join(root, "images"))) == ["1000_3.nii.gz", "1001_3.nii.gz"]
    assert sorted(os.listdir(os.path.join(root, "masks"))) == ["1000_3.nii.gz", "1001_3.nii.gz"]
    for name in ("1000_3.nii.gz", "1001_3.nii.gz"):
        img, lab = nib.load(os.path.join(root, "images", name)), nib.load(os.path.join(root, "masks", name))
        image, label = np.asarray(img.dataobj), np.asarray(lab.dataobj)
        assert image.dtype == np.float32 and label.dtype == np.uint8
        assert set(np.unique(label).tolist()) == set(range(11))
        np.testing.assert_allclose(img.affine, lab.affine)
        np.testing.assert_allclose(np.linalg.norm(img.affine[:3, :3], axis=0), 1.0, atol=1e-6)  # 1 mm
        counts = np.bincount(label.ravel(), minlength=11)
        assert counts[1:].min() >= 20
        # every structure has its own mean intensity, well apart from the others
        means = np.sort([image[label == k].mean() for k in range(1, 11)])
        assert np.diff(means).min() > 0.02 * (means[-1] - means[0])
    again = make_malc_demo(str(tmp_path / "again"), num_cases=1, shape=(40, 48, 40), seed=3)
    assert (
        _load(os.path.join(again, "images", "1000_3.nii.gz")).tobytes()
        == _load(os.path.join(root, "images", "1000_3.nii.gz")).tobytes()
    )


def test_hvsmr_layout_labels_and_intensities(tmp_path):
    root = make_hvsmr_demo(str(tmp_path / "hvsmr"), num_cases=2, shape=(40, 40, 32), seed=0)
    assert sorted(os.listdir(os.path.join(root, "images"))) == [f"training_axial_crop_pat{i}.nii.gz" for i in range(2)]
    assert sorted(os.listdir(os.path.join(root, "masks"))) == [
        f"training_axial_crop_pat{i}-label.nii.gz" for i in range(2)
    ]
    for i in range(2):
        img = nib.load(os.path.join(root, "images", f"training_axial_crop_pat{i}.nii.gz"))
        image = np.asarray(img.dataobj)
        label = _load(os.path.join(root, "masks", f"training_axial_crop_pat{i}-label.nii.gz"))
        assert set(np.unique(label).tolist()) == {0, 1, 2}
        spacing = np.linalg.norm(img.affine[:3, :3], axis=0)
        assert np.all((spacing > 0.8) & (spacing < 1.2))
        blood, myo = image[label == 2].mean(), image[label == 1].mean()
        near = ndimage.binary_dilation(label > 0, iterations=3) & (label == 0)
        assert blood > 1.5 * myo and myo > 1.3 * image[near].mean()
        # the myocardium is a thin shell (<= 3 mm) around the blood pool
        assert ndimage.distance_transform_edt(label != 2, sampling=spacing)[label == 1].max() <= 3.0
    other = make_hvsmr_demo(str(tmp_path / "other"), num_cases=1, shape=(40, 40, 32), seed=1)
    assert not np.array_equal(
        _load(os.path.join(other, "masks", "training_axial_crop_pat0-label.nii.gz")),
        _load(os.path.join(root, "masks", "training_axial_crop_pat0-label.nii.gz")),
    )


# ------------------------------------------------------------------------------------- BUSI
def test_busi_file_names_and_quirks(busi_root):
    assert sorted(os.listdir(busi_root)) == ["benign", "malignant", "normal"]
    for cls in ("benign", "malignant", "normal"):
        names = set(os.listdir(os.path.join(busi_root, cls)))
        for n in range(1, 9):
            assert f"{cls} ({n}).png" in names and f"{cls} ({n})_mask.png" in names
            assert (f"{cls} ({n})_mask_1.png" in names) == (cls != "normal" and n % 4 == 0)
        assert len(names) == 16 + (0 if cls == "normal" else 2)
    modes = {n: Image.open(os.path.join(busi_root, "benign", f"benign ({n}).png")).mode for n in range(1, 6)}
    assert modes == {1: "L", 2: "RGB", 3: "RGBA", 4: "L", 5: "RGB"}
    rgb = np.asarray(Image.open(os.path.join(busi_root, "benign", "benign (2).png")))
    assert (
        rgb.shape == (96, 96, 3)
        and np.array_equal(rgb[..., 0], rgb[..., 1])
        and np.array_equal(rgb[..., 0], rgb[..., 2])
    )
    rgba = np.asarray(Image.open(os.path.join(busi_root, "benign", "benign (3).png")))
    assert rgba.shape == (96, 96, 4) and np.all(rgba[..., 3] == 255)
    assert np.array_equal(_gray(os.path.join(busi_root, "benign", "benign (3).png")), rgba[..., 0])


def test_busi_masks(busi_root):
    for cls in ("benign", "malignant"):
        for n in range(1, 9):
            with Image.open(os.path.join(busi_root, cls, f"{cls} ({n})_mask.png")) as img:
                assert img.mode == "L" and img.size == (96, 96)
                mask = np.asarray(img)
            assert set(np.unique(mask).tolist()) == {0, 255}
        second = _gray(os.path.join(busi_root, cls, f"{cls} (4)_mask_1.png"))
        first = _gray(os.path.join(busi_root, cls, f"{cls} (4)_mask.png"))
        assert 0 < (second > 0).sum() < (first > 0).sum() and not np.any((first > 0) & (second > 0))
    for n in range(1, 9):
        assert not _gray(os.path.join(busi_root, "normal", f"normal ({n})_mask.png")).any()


def test_busi_learnable_structure(busi_root):
    solidity, aspect = {"benign": [], "malignant": []}, {"benign": [], "malignant": []}
    for cls in solidity:
        for n in range(1, 9):
            mask = _gray(os.path.join(busi_root, cls, f"{cls} ({n})_mask.png")) > 0
            image = _gray(os.path.join(busi_root, cls, f"{cls} ({n}).png")).astype(float)
            ring = ndimage.binary_dilation(mask, iterations=6) & ~ndimage.binary_dilation(mask, iterations=2)
            assert image[mask].mean() < 0.6 * image[ring].mean()  # hypoechoic lesion
            props = regionprops(mask.astype(int))[0]
            solidity[cls].append(props.solidity)
            rows, cols = np.nonzero(mask)
            aspect[cls].append(rows.std() / cols.std())  # height / width, insensitive to thin spicules
    assert np.mean(solidity["malignant"]) < np.mean(solidity["benign"]) - 0.1
    assert min(aspect["malignant"]) > 1.0 > max(aspect["benign"])  # taller-than-wide vs oval


def test_busi_deterministic_and_without_normal(busi_root, tmp_path):
    root = make_busi_demo(str(tmp_path / "busi"), num_per_class=4, size=96, seed=0, include_normal=False)
    assert sorted(os.listdir(root)) == ["benign", "malignant"]
    for name in ("benign (1).png", "benign (4)_mask_1.png"):
        assert np.array_equal(_gray(os.path.join(root, "benign", name)), _gray(os.path.join(busi_root, "benign", name)))
    other = make_busi_demo(str(tmp_path / "other"), num_per_class=1, size=96, seed=5)
    assert not np.array_equal(
        _gray(os.path.join(other, "benign", "benign (1).png")),
        _gray(os.path.join(busi_root, "benign", "benign (1).png")),
    )


# ------------------------------------------------------------------------------ ChestX-ray14
def _cxr_rows(root):
    with open(os.path.join(root, "Data_Entry_2017.csv"), newline="") as f:
        return list(csv.reader(f))


def test_chestxray14_csv_and_files(cxr_root):
    with open(os.path.join(cxr_root, "Data_Entry_2017.csv")) as f:
        header = f.readline().rstrip("\n")
    assert header == (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
    )
    rows = _cxr_rows(cxr_root)[1:]
    names = [r[0] for r in rows]
    assert sorted(os.listdir(os.path.join(cxr_root, "images"))) == sorted(names)
    per_patient = {}
    for r in rows:
        assert r[0] == f"{int(r[3]):08d}_{int(r[2]):03d}.png"  # Patient ID is an integer, as in the real file
        per_patient.setdefault(r[3], []).append(r[1])
        with Image.open(os.path.join(cxr_root, "images", r[0])) as img:
            assert img.mode == "L" and img.size == (96, 96)
    assert len(per_patient) == 24 and all(2 <= len(v) <= 4 for v in per_patient.values())
    findings = {f for r in rows for f in [r[1]]}
    assert findings == {"No Finding", "Effusion", "Pneumothorax", "Subcutaneous Emphysema", "Effusion|Pneumothorax"}
    never_sick = [p for p, v in per_patient.items() if set(v) == {"No Finding"}]
    assert len(never_sick) >= 6


def test_chestxray14_learnable_findings(cxr_root):
    s = 96
    lungs = np.r_[int(0.12 * s) : int(0.4 * s), int(0.6 * s) : int(0.88 * s)]
    wall = np.r_[int(0.05 * s) : int(0.12 * s), int(0.88 * s) : int(0.95 * s)]
    stats: dict[str, list] = {}
    for r in _cxr_rows(cxr_root)[1:]:
        a = _gray(os.path.join(cxr_root, "images", r[0])).astype(float) / 255.0
        basal = a[int(0.6 * s) : int(0.78 * s)][:, lungs].mean()
        apical_dark = (a[int(0.12 * s) : int(0.35 * s)][:, lungs] < 0.08).mean()
        wall_dark = (a[int(0.3 * s) : int(0.85 * s)][:, wall] < 0.35).mean()
        stats.setdefault(r[1], []).append((basal, apical_dark, wall_dark))
    mean = {k: np.mean(v, axis=0) for k, v in stats.items()}
    normal = mean["No Finding"]
    assert mean["Effusion"][0] > normal[0] + 0.03  # opaque lung bases
    assert mean["Pneumothorax"][1] > normal[1] + 0.04  # dark, texture-free apices
    assert mean["Subcutaneous Emphysema"][2] > normal[2] + 0.03  # dark streaks in the chest wall


def test_chestxray14_deterministic(cxr_root, tmp_path):
    root = make_chestxray14_demo(str(tmp_path / "cxr"), num_patients=3, size=96, seed=0)
    for name in os.listdir(os.path.join(root, "images")):
        assert np.array_equal(_gray(os.path.join(root, "images", name)), _gray(os.path.join(cxr_root, "images", name)))
    assert _cxr_rows(root)[1:] == _cxr_rows(cxr_root)[1 : len(_cxr_rows(root))]
    other = make_chestxray14_demo(str(tmp_path / "other"), num_patients=3, size=96, seed=1)
    assert _cxr_rows(other) != _cxr_rows(root)


# -------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "make, kwargs",
    [
        (make_brats_demo, {"shape": (8, 64, 64)}),
        (make_brats_demo, {"num_cases": 0}),
        (make_malc_demo, {"shape": (32, 32)}),
        (make_busi_demo, {"size": 8}),
        (make_chestxray14_demo, {"num_patients": 0}),
        (make_hvsmr_demo, {"seed": -1}),
    ],
)
def test_bad_arguments(make, kwargs, tmp_path):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        make(str(tmp_path), **kwargs)


# --------------------------------------------------------------------------- demo datasets
def test_demo_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINES_DEMO_DIR", str(tmp_path))
    assert demo_root() == str(tmp_path)
    monkeypatch.delenv("PIPELINES_DEMO_DIR")
    assert demo_root() == os.path.expanduser(os.path.join("~", ".cache", "attention-mis", "demo"))


@pytest.fixture
def counted(monkeypatch):
    calls = []
    original = demo.DEMO_DATASETS["busi"]

    @functools.wraps(original)
    def wrapper(root, **kwargs):
        calls.append(kwargs)
        return original(root, **kwargs)

    monkeypatch.setitem(demo.DEMO_DATASETS, "busi", wrapper)
    return calls


def test_ensure_demo_dataset_caches_and_regenerates(counted, monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINES_DEMO_DIR", str(tmp_path))
    root = ensure_demo_dataset("busi", num_per_class=2, size=48)
    assert root == str(tmp_path / "busi") and len(counted) == 1
    marker = json.loads((tmp_path / "busi" / DEMO_MARKER).read_text())
    assert marker["kwargs"] == {"num_per_class": 2, "size": 48, "seed": 0, "include_normal": True}

    image = tmp_path / "busi" / "benign" / "benign (1).png"
    stamp = image.stat().st_mtime_ns
    # the same arguments, defaults spelled out or not: a no-op
    assert ensure_demo_dataset("busi", num_per_class=2, size=48, seed=0) == root
    assert len(counted) == 1 and image.stat().st_mtime_ns == stamp

    # the marker removed (e.g. an interrupted run): regenerated
    os.remove(tmp_path / "busi" / DEMO_MARKER)
    ensure_demo_dataset("busi", num_per_class=2, size=48)
    assert len(counted) == 2 and (tmp_path / "busi" / DEMO_MARKER).exists()

    # other arguments: regenerated from scratch, no stale files left
    ensure_demo_dataset("busi", num_per_class=1, size=48, include_normal=False)
    assert len(counted) == 3
    assert sorted(os.listdir(tmp_path / "busi")) == [DEMO_MARKER, "benign", "malignant"]
    assert not (tmp_path / "busi" / "benign" / "benign (2).png").exists()


def test_ensure_demo_dataset_after_interruption(monkeypatch, tmp_path):
    def broken(root, **kwargs):
        os.makedirs(os.path.join(root, "benign"))
        open(os.path.join(root, "benign", "stale.png"), "w").close()
        raise KeyboardInterrupt

    root = str(tmp_path / "data")
    with monkeypatch.context() as m:
        m.setitem(demo.DEMO_DATASETS, "busi", broken)
        with pytest.raises(KeyboardInterrupt):
            ensure_demo_dataset("busi", root=root, num_per_class=1, size=48)
    assert not os.path.exists(os.path.join(root, DEMO_MARKER))
    ensure_demo_dataset("busi", root=root, num_per_class=1, size=48)
    assert os.path.exists(os.path.join(root, DEMO_MARKER))
    assert sorted(os.listdir(os.path.join(root, "benign"))) == ["benign (1).png", "benign (1)_mask.png"]


def test_ensure_demo_dataset_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown demo dataset 'lidc'"):
        ensure_demo_dataset("lidc", root=str(tmp_path))
    with pytest.raises(ValueError, match="bad arguments for demo dataset 'brats'"):
        ensure_demo_dataset("brats", root=str(tmp_path), num_patients=3)


@pytest.mark.parametrize("name", ["brats", "malc", "hvsmr", "busi", "chestxray14"])
def test_default_generation_is_fast(name, tmp_path):
    start = time.perf_counter()
    root = ensure_demo_dataset(name, root=str(tmp_path / name))
    assert time.perf_counter() - start < 10.0
    assert os.path.exists(os.path.join(root, DEMO_MARKER))
