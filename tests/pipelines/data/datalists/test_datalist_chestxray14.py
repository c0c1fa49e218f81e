"""Tests of the NIH ChestX-ray14 datalist scanner: NIH folders, odd CSV columns and every validation error."""

from __future__ import annotations

import os
import shutil

import pytest
from datalist_helpers import copy_dataset, esc

from pipelines.data import DatasetError, chestxray14_datalist, make_chestxray14_demo


@pytest.fixture(scope="module")
def cxr_src(tmp_path_factory):
    return make_chestxray14_demo(str(tmp_path_factory.mktemp("cxr")), num_patients=8, size=48, seed=0)


def _csv_rows(root):
    with open(os.path.join(root, "Data_Entry_2017.csv")) as f:
        return f.read().splitlines()


def test_chestxray14_datalist(cxr_src):
    rows = [r.split(",") for r in _csv_rows(cxr_src)[1:]]
    items = chestxray14_datalist(cxr_src)
    expected = sorted(r[0] for r in rows if r[1] in ("No Finding", "Effusion"))
    assert [it["case_id"] for it in items] == expected
    first = items[0]
    assert first == {
        "image": os.path.join(cxr_src, "images", "00000001_000.png"),
        "label": 0,
        "finding": "No Finding",
        "patient_id": "00000001",
        "case_id": "00000001_000.png",
    }
    assert {it["label"] for it in items if it["finding"] == "Effusion"} == {1}
    findings = ("Pneumothorax", "Effusion", "No Finding")
    items = chestxray14_datalist(cxr_src, findings=findings)
    assert all(findings[it["label"]] == it["finding"] for it in items)
    multi = {r[0] for r in rows if "|" in r[1]}
    assert multi and not multi & {it["case_id"] for it in items}  # multi-label rows are skipped


def test_chestxray14_nih_folders_and_odd_columns(cxr_src, tmp_path):
    root = tmp_path / "nih"
    os.makedirs(root / "images_001" / "images")
    os.makedirs(root / "images_002" / "images")
    names = sorted(os.listdir(os.path.join(cxr_src, "images")))
    for i, name in enumerate(names):
        shutil.copy(os.path.join(cxr_src, "images", name), root / f"images_00{1 + i % 2}" / "images" / name)
    # reordered and extra columns, a BOM, spaces around values, blank lines
    lines = ["\ufeffPatient ID,Extra,Image Index,Finding Labels"]
    for row in _csv_rows(cxr_src)[1:]:
        r = row.split(",")
        lines += [f" {r[3]} ,x, {r[0]} ,{r[1]} ", ""]
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = chestxray14_datalist(str(root))
    reference = chestxray14_datalist(cxr_src)
    assert [(it["case_id"], it["label"], it["patient_id"]) for it in items] == [
        (it["case_id"], it["label"], it["patient_id"]) for it in reference
    ]
    assert items[1]["image"] == str(root / "images_002" / "images" / items[1]["case_id"])


def test_chestxray14_missing_image(cxr_src, tmp_path):
    root = copy_dataset(cxr_src, tmp_path / "cxr")
    os.remove(os.path.join(root, "images", "00000002_000.png"))
    with pytest.raises(
        DatasetError,
        match=rf"{esc(os.path.join(root, 'Data_Entry_2017.csv'))}, line \d+: image 00000002_000\.png is missing",
    ):
        chestxray14_datalist(root)


def test_chestxray14_unreadable_image(cxr_src, tmp_path):
    root = copy_dataset(cxr_src, tmp_path / "cxr")
    path = os.path.join(root, "images", "00000001_001.png")
    with open(path, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(DatasetError, match=f"{esc(path)}: unreadable image file"):
        chestxray14_datalist(root)
    assert len(chestxray14_datalist(root, check_images=False)) == len(chestxray14_datalist(cxr_src))


def test_chestxray14_bad_csv(cxr_src, tmp_path):
    root = copy_dataset(cxr_src, tmp_path / "cxr")
    csv_path = os.path.join(root, "Data_Entry_2017.csv")
    lines = _csv_rows(root)
    with open(csv_path, "w") as f:
        f.write("\n".join([lines[0].replace("Patient ID", "PatientID")] + lines[1:]))
    with pytest.raises(DatasetError, match=rf"{esc(csv_path)} lacks the column\(s\) \['Patient ID'\]"):
        chestxray14_datalist(root)
    with open(csv_path, "w") as f:
        f.write("\n".join(lines + ["00000001_000.png,No Finding"]))
    with pytest.raises(DatasetError, match=rf"{esc(csv_path)}, line {len(lines) + 1}: expected at least 4 columns"):
        chestxray14_datalist(root)
    with open(csv_path, "w") as f:
        f.write("\n".join(lines + [lines[1]]))
    with pytest.raises(DatasetError, match=rf"line {len(lines) + 1}: image 00000001_000\.png is listed twice"):
        chestxray14_datalist(root)
    with pytest.raises(DatasetError, match=rf"no single-label rows with a finding in \['Hernia'\]"):
        chestxray14_datalist(cxr_src, findings=("Hernia",))
    os.remove(csv_path)
    with pytest.raises(DatasetError, match=f"metadata file {esc(csv_path)} does not exist"):
        chestxray14_datalist(root)
    shutil.copy(os.path.join(cxr_src, "Data_Entry_2017.csv"), csv_path)
    shutil.rmtree(os.path.join(root, "images"))
    with pytest.raises(DatasetError, match=f"no PNG images found under {esc(root)}; expected <root>/images/"):
        chestxray14_datalist(root)
