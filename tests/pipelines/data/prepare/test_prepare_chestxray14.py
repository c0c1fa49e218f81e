"""NIH ChestX-ray14 preparation: the metadata reader, the split rule (patient-disjoint, never-diseased No Finding,
1:1 balance, seeded and order-independent, 60/20/20) on synthetic tables, and the prepared folders on demo data."""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main
from pipelines.data import (
    DatasetError,
    make_chestxray14_demo,
    plan_chestxray14_split,
    prepare_chestxray14,
    read_data_entry,
)
from transforms.chestxray import CXR_TASKS

REPO = Path(__file__).resolve().parents[4]
HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
SPLITS = ("train", "val", "test")


def _entry(name: str, findings: str, patient: str) -> dict:
    return {"image": name, "findings": findings.split("|"), "patient_id": patient}


def _patient(pid: int, findings: list[str]) -> list[dict]:
    return [_entry(f"{pid:08d}_{i:03d}.png", f, f"{pid:08d}") for i, f in enumerate(findings)]


# ------------------------------------------------------------------------------------------------- read_data_entry
def _write_csv(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_read_data_entry_real_header_and_multilabel(tmp_path):
    path = _write_csv(tmp_path / "Data_Entry_2017.csv", [
        HEADER,
        "00000001_000.png,Cardiomegaly|Emphysema,0,1,58,M,PA,2894,2729,0.143,0.143,",
        "",
        "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171,",
        "00000013_005.png, Effusion | Pneumothorax ,5,13,60,M,AP,3056,2544,0.139,0.139,",
    ])
    assert read_data_entry(path) == [
        {"image": "00000001_000.png", "findings": ["Cardiomegaly", "Emphysema"], "patient_id": "00000001"},
        {"image": "00000002_000.png", "findings": ["No Finding"], "patient_id": "00000002"},
        {"image": "00000013_005.png", "findings": ["Effusion", "Pneumothorax"], "patient_id": "00000013"},
    ]


BAD_TABLES = [  # (id, lines after nothing / the header, error pattern naming the line)
    ("missing_column", ["Image Index,Finding Labels", "a.png,Effusion"],
     r"line 1: the header lacks the column\(s\) \['Patient ID'\]"),
    ("short_row", [HEADER, "a.png,Effusion,0,1,58,M,PA,1,1,1,1,", "b.png,Effusion"],
     r"line 3: expected at least 4 columns, got 2"),
    ("empty_finding", [HEADER, "a.png,Effusion|,0,1,58,M,PA,1,1,1,1,"], r"line 2: empty finding"),
    ("empty_name", [HEADER, " ,Effusion,0,1,58,M,PA,1,1,1,1,"], r"line 2: empty Image Index"),
    ("empty_patient", [HEADER, "a.png,Effusion,0,,58,M,PA,1,1,1,1,"], r"line 2: empty Patient ID"),
    ("folder_in_name", [HEADER, "../a.png,Effusion,0,1,58,M,PA,1,1,1,1,"],
     r"line 2: Image Index '\.\./a\.png' is not a plain"),
    ("duplicate", [HEADER, "a.png,Effusion,0,1,58,M,PA,1,1,1,1,", "", "a.png,No Finding,0,1,58,M,PA,1,1,1,1,"],
     r"line 4: image a\.png is listed twice \(also on line 2\)"),
    ("header_only", [HEADER], r"has a header but no rows"),
]


@pytest.mark.parametrize("lines,pattern", [c[1:] for c in BAD_TABLES], ids=[c[0] for c in BAD_TABLES])
def test_read_data_entry_errors_name_file_and_line(tmp_path, lines, pattern):
    path = _write_csv(tmp_path / "table.csv", lines)
    with pytest.raises(DatasetError, match=re.escape(path) + r".*" + pattern):
        read_data_entry(path)


def test_read_data_entry_missing_or_empty_file(tmp_path):
    with pytest.raises(DatasetError, match=r"none\.csv does not exist"):
        read_data_entry(str(tmp_path / "none.csv"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetError, match=r"empty\.csv is empty"):
        read_data_entry(str(tmp_path / "empty.csv"))


# ------------------------------------------------------------------------------------------- the split, by hand
def _hand_table() -> list[dict]:
    """Task ``ne``: patient sizes differ, so the split does not depend on the seed (see the expected values)."""
    return [
        *_patient(1, ["Effusion"] * 6),  # A: 6 Effusion images
        *_patient(2, ["Effusion", "Effusion", "No Finding", "No Finding"]),  # B: 2 Effusion (its No Finding: out)
        *_patient(3, ["Effusion", "Effusion|Atelectasis"]),  # C: 1 single-label Effusion
        *_patient(4, ["Effusion"]),  # D: 1
        *_patient(5, ["No Finding"] * 7),  # N1: 7 No Finding
        *_patient(6, ["No Finding"] * 3 + ["Atelectasis"]),  # N2: 3 (another disease does not matter)
        *_patient(7, ["No Finding"] * 3 + ["Pneumothorax|Mass"]),  # N3: 3 (not a disease of ne)
        *_patient(8, ["No Finding"] * 4 + ["Infiltration|Effusion"]),  # diseased by a multi-label row: out
        *_patient(9, ["Effusion|Mass", "Effusion|Edema"]),  # only multi-label: out
    ]


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_plan_by_hand(seed):
    # Effusion (10 images, targets 6/2/2): A (6) -> train; B (2): gains train 0, val 2, test 2 -> val (tie: earlier
    # split); C, D (1 each): train 0, val 0, test 2 then 1 -> test.  No Finding (13, targets 7.8/2.6/2.6): N1 (7) ->
    # train; N2 or N3 (3): train 0.8 * 3 < val 2.6 * 3 -> val; the other: train 0.8, val -0.4, test 2.6 -> test.
    # Balanced: train 6 + 6 of N1's 7, val 2 + 2 of 3, test 2 + 2 of 3.
    plan = plan_chestxray14_split(_hand_table(), "ne", seed=seed)
    by = defaultdict(set)
    for name, (split, finding) in plan.items():
        by[split, finding].add(name[:8])
    counts = Counter(plan.values())
    assert counts == {("train", "Effusion"): 6, ("train", "No Finding"): 6, ("val", "Effusion"): 2,
                      ("val", "No Finding"): 2, ("test", "Effusion"): 2, ("test", "No Finding"): 2}
    assert by["train", "Effusion"] == {"00000001"} and by["val", "Effusion"] == {"00000002"}
    assert by["test", "Effusion"] == {"00000003", "00000004"}
    assert by["train", "No Finding"] == {"00000005"}
    assert {frozenset(by["val", "No Finding"]), frozenset(by["test", "No Finding"])} == {
        frozenset({"00000006"}), frozenset({"00000007"})}
    assert "00000003_001.png" not in plan and not any(n[:8] in ("00000008", "00000009") for n in plan)


# -------------------------------------------------------------------------------------------- the split, properties
_POOL = ("No Finding", "Effusion", "Pneumothorax", "Subcutaneous Emphysema", "Atelectasis", "Effusion|Infiltration",
         "Pneumothorax|Effusion", "Subcutaneous Emphysema|Pneumothorax", "Mass")


def _random_table(rng: np.random.Generator, num_patients: int) -> list[dict]:
    """Patients of 1-6 images; a third never diseased, the others mixing findings (two task diseases, multi-label
    rows, No Finding follow-ups)."""
    entries = []
    for pid in range(1, num_patients + 1):
        size = int(rng.integers(1, 7))
        if rng.random() < 1 / 3:
            findings = ["No Finding" if rng.random() < 0.8 else "Atelectasis" for _ in range(size)]
        else:
            findings = [str(_POOL[int(i)]) for i in rng.integers(0, len(_POOL), size)]
        entries += _patient(pid, findings)
    return entries


def _check_plan(entries: list[dict], plan: dict, task: str) -> None:
    classes = CXR_TASKS[task]
    row = {e["image"]: e for e in entries}
    diseased = {e["patient_id"] for e in entries if set(e["findings"]) & set(classes[1:])}
    split_of_patient: dict[str, str] = {}
    for name, (split, finding) in plan.items():
        assert row[name]["findings"] == [finding] and finding in classes  # single-label, a class of the task
        patient = row[name]["patient_id"]
        assert split_of_patient.setdefault(patient, split) == split  # patient-disjoint
        if finding == "No Finding":
            assert patient not in diseased  # never diagnosed with a task disease, in any row
    for split in SPLITS:
        sizes = [sum(1 for v in plan.values() if v == (split, c)) for c in classes]
        assert len(set(sizes)) == 1, (split, sizes)  # 1:1 balance


@pytest.mark.parametrize("task", sorted(CXR_TASKS))
@pytest.mark.parametrize("table_seed", [0, 1, 2])
def test_plan_properties_on_random_tables(task, table_seed):
    rng = np.random.default_rng(table_seed)
    entries = _random_table(rng, 150)
    both = {e["patient_id"] for e in entries if e["findings"] == ["Effusion"]} & {
        e["patient_id"] for e in entries if e["findings"] == ["Pneumothorax"]}
    assert both  # patients with single-label images of two task diseases are part of the test
    for seed in (0, 1, 5):
        plan = plan_chestxray14_split(entries, task, seed=seed)
        assert all(Counter(s for s, _ in plan.values())[split] > 0 for split in SPLITS)
        _check_plan(entries, plan, task)
        shuffled = [entries[i] for i in rng.permutation(len(entries))]
        assert plan_chestxray14_split(shuffled, task, seed=seed) == plan  # independent of the row order
        if task == "nep":  # some patient has images of both diseases in the plan (in one split, checked above)
            findings = defaultdict(set)
            for name, (_, finding) in plan.items():
                findings[name[:8]].add(finding)
            assert any(f == {"Effusion", "Pneumothorax"} for f in findings.values())


def test_plan_seed_changes_the_choice_not_the_rule():
    entries = _random_table(np.random.default_rng(3), 150)
    plans = [plan_chestxray14_split(entries, "nep", seed=s) for s in (0, 1)]
    assert plans[0] != plans[1]
    assert plan_chestxray14_split(entries, "nep", seed=0) == plans[0]


def test_plan_fractions_on_a_large_table():
    # 2000 disease patients of 1-5 Effusion images and 3000 never-diseased ones of 1-5 No Finding images: the
    # Effusion class is the smaller one in every split, so its images keep the 60/20/20 split after balancing.
    rng = np.random.default_rng(0)
    entries = []
    for pid in range(1, 5001):
        entries += _patient(pid, ["Effusion" if pid <= 2000 else "No Finding"] * int(rng.integers(1, 6)))
    total = sum(1 for e in entries if e["findings"] == ["Effusion"])
    for fractions in ((0.6, 0.2, 0.2), (0.7, 0.3, 0.0)):
        plan = plan_chestxray14_split(entries, "ne", seed=0, fractions=fractions)
        counts = Counter(plan.values())
        for split, fraction in zip(SPLITS, fractions):
            assert abs(counts[split, "Effusion"] - fraction * total) <= 5  # within one patient's images
            assert counts[split, "No Finding"] == counts[split, "Effusion"]
        _check_plan(entries, plan, "ne")


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"task": "nx"}, ValueError, r"unknown chest X-ray task 'nx'"),
        ({"task": "ne", "fractions": (0.6, 0.2)}, ValueError, r"fractions must be 3"),
        ({"task": "ne", "fractions": (0.6, 0.3, 0.3)}, ValueError, r"summing to 1"),
        ({"task": "ne", "fractions": (0.0, 0.5, 0.5)}, ValueError, r"positive train fraction"),
        ({"task": "ne", "seed": -1}, ValueError, r"seed must be non-negative"),
        ({"task": "np"}, DatasetError, r"no single-label 'Pneumothorax' images"),
    ],
)
def test_plan_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        plan_chestxray14_split(_hand_table(), **kwargs)


def test_plan_errors_on_data():
    entries = _hand_table()
    with pytest.raises(DatasetError, match=r"image 00000001_000\.png is listed twice"):
        plan_chestxray14_split(entries + entries[:1], "ne")
    diseased_only = _patient(1, ["Effusion", "No Finding"]) + _patient(2, ["No Finding", "Effusion|Mass"])
    with pytest.raises(DatasetError, match=r"no single-label 'No Finding' images from patients never diagnosed"):
        plan_chestxray14_split(diseased_only, "ne")


# ----------------------------------------------------------------------------------------------- prepared folders
@pytest.fixture(scope="module")
def cxr_src(tmp_path_factory):
    return make_chestxray14_demo(str(tmp_path_factory.mktemp("cxr") / "nih"), num_patients=24, size=32, seed=0)


def _read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _snapshot(root) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(root).rglob("*")}


def test_prepare_writes_links_manifest_and_counts(cxr_src, tmp_path):
    before = _snapshot(cxr_src)
    task_dir = prepare_chestxray14(cxr_src, str(tmp_path / "out"), "nep", seed=0)
    assert task_dir == str(tmp_path / "out" / "nep")
    assert _snapshot(cxr_src) == before  # the source is only read
    plan = plan_chestxray14_split(read_data_entry(os.path.join(cxr_src, "Data_Entry_2017.csv")), "nep", seed=0)
    rows = _read_csv(os.path.join(task_dir, "manifest.csv"))
    assert list(rows[0]) == ["image", "split", "finding", "label", "patient_id", "source"]
    assert sorted(r["image"].rsplit("/", 1)[1] for r in rows) == sorted(plan)
    classes = CXR_TASKS["nep"]
    for r in rows:
        name = r["image"].rsplit("/", 1)[1]
        assert (r["split"], r["finding"]) == plan[name]
        assert r["image"] == f"{r['split']}/{r['finding'].replace(' ', '_')}/{name}"
        assert classes[int(r["label"])] == r["finding"] and r["patient_id"] == name[:8]
        assert r["source"] == os.path.join(cxr_src, "images", name)
        path = os.path.join(task_dir, *r["image"].split("/"))
        assert os.path.islink(path) and os.readlink(path) == r["source"]  # absolute link
    on_disk = sorted(str(p.relative_to(task_dir)) for p in Path(task_dir).rglob("*.png"))
    assert on_disk == sorted(r["image"] for r in rows)
    assert {p.name for p in Path(task_dir).iterdir()} == {"train", "val", "test", "manifest.csv", "counts.csv",
                                                          "counts.md"}
    counts = _read_csv(os.path.join(task_dir, "counts.csv"))
    assert [(c["split"], c["finding"], c["label"]) for c in counts] == [
        (s, f, str(i)) for s in SPLITS for i, f in enumerate(classes)]
    for c in counts:
        chosen = [r for r in rows if (r["split"], r["finding"]) == (c["split"], c["finding"])]
        assert int(c["images"]) == len(chosen) > 0 and int(c["patients"]) == len({r["patient_id"] for r in chosen})
    n = {s: int(next(c["images"] for c in counts if c["split"] == s)) for s in SPLITS}
    md = Path(task_dir, "counts.md").read_text()
    assert "| class | train | val | test | total |" in md
    assert f"| all | {3 * n['train']} (" in md


def test_prepare_nih_image_folders_and_copies(cxr_src, tmp_path):
    root = tmp_path / "nih"
    names = sorted(os.listdir(os.path.join(cxr_src, "images")))
    for i, name in enumerate(names):
        folder = root / f"images_00{1 + i % 2}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(cxr_src, "images", name), folder / name)
    shutil.copy(os.path.join(cxr_src, "Data_Entry_2017.csv"), root)
    reference = _read_csv(os.path.join(prepare_chestxray14(cxr_src, str(tmp_path / "ref"), "ne"), "manifest.csv"))
    task_dir = prepare_chestxray14(str(root), str(tmp_path / "out"), "ne", link=False)
    rows = _read_csv(os.path.join(task_dir, "manifest.csv"))
    assert [{k: v for k, v in r.items() if k != "source"} for r in rows] == [
        {k: v for k, v in r.items() if k != "source"} for r in reference]
    for r in rows:
        name = r["image"].rsplit("/", 1)[1]
        assert r["source"] == str(root / f"images_00{1 + names.index(name) % 2}" / "images" / name)
        path = os.path.join(task_dir, r["image"])
        assert not os.path.islink(path) and Path(path).read_bytes() == Path(r["source"]).read_bytes()


def test_prepare_copies_where_links_are_refused(cxr_src, tmp_path, monkeypatch, caplog):
    calls = []

    def refuse(src, dst, *args, **kwargs):
        calls.append(dst)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", refuse)
    with caplog.at_level(logging.WARNING):
        task_dir = prepare_chestxray14(cxr_src, str(tmp_path / "out"), "np")
    rows = _read_csv(os.path.join(task_dir, "manifest.csv"))
    assert len(calls) == 1  # one refusal: the rest is copied without retrying
    paths = [os.path.join(task_dir, r["image"]) for r in rows]
    assert all(os.path.isfile(p) and not os.path.islink(p) for p in paths)
    assert "copying the images instead" in caplog.text


def test_prepare_without_a_test_split(cxr_src, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        task_dir = prepare_chestxray14(cxr_src, str(tmp_path / "out"), "ne", fractions=(0.75, 0.25, 0.0))
    counts = {(c["split"], c["finding"]): int(c["images"]) for c in _read_csv(os.path.join(task_dir, "counts.csv"))}
    assert counts["test", "Effusion"] == counts["test", "No Finding"] == 0
    assert counts["train", "Effusion"] > counts["val", "Effusion"] > 0
    assert os.listdir(os.path.join(task_dir, "test", "Effusion")) == []  # the folders exist, empty
    assert "split is empty" not in caplog.text  # asked for: no warning


def test_prepare_errors(cxr_src, tmp_path):
    with pytest.raises(DatasetError, match=r"ChestX-ray14 root .*none does not exist"):
        prepare_chestxray14(str(tmp_path / "none"), str(tmp_path / "out"), "ne")
    with pytest.raises(DatasetError, match=r"is inside the source folder"):
        prepare_chestxray14(cxr_src, os.path.join(cxr_src, "prepared"), "ne")
    inner = tmp_path / "ne" / "nih"
    shutil.copytree(cxr_src, inner)
    with pytest.raises(DatasetError, match=r"source folder .* is inside the output task folder"):
        prepare_chestxray14(str(inner), str(tmp_path), "ne", overwrite=True)  # overwrite would empty tmp_path/ne
    with pytest.raises(ValueError, match=r"unknown chest X-ray task"):
        prepare_chestxray14(cxr_src, str(tmp_path / "out"), "effusion")
    assert not (tmp_path / "out").exists()

    no_csv = tmp_path / "no_csv"
    shutil.copytree(os.path.join(cxr_src, "images"), no_csv / "images")
    with pytest.raises(DatasetError, match=re.escape(str(no_csv / "Data_Entry_2017.csv")) + " does not exist"):
        prepare_chestxray14(str(no_csv), str(tmp_path / "out"), "ne")

    partial = tmp_path / "partial"
    shutil.copytree(cxr_src, partial)
    plan = plan_chestxray14_split(read_data_entry(str(partial / "Data_Entry_2017.csv")), "ne")
    gone = sorted(plan)[:2]
    for name in gone:
        os.remove(partial / "images" / name)
    with pytest.raises(DatasetError, match=rf"2 selected image\(s\) of .*are missing .*: {gone[0]}, {gone[1]}\."):
        prepare_chestxray14(str(partial), str(tmp_path / "out"), "ne")
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_prepare_refuses_non_empty_output_unless_overwrite(cxr_src, tmp_path):
    task_dir = tmp_path / "out" / "ne"
    task_dir.mkdir(parents=True)
    (task_dir / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=r"ne exists and is not empty; pass overwrite=True"):
        prepare_chestxray14(cxr_src, str(tmp_path / "out"), "ne")
    first = prepare_chestxray14(cxr_src, str(tmp_path / "out"), "ne", seed=0, overwrite=True)
    (task_dir / "lung_boxes.csv").write_text("image\n")  # a lung-box cache naming the old splits
    prepare_chestxray14(cxr_src, str(tmp_path / "out"), "ne", seed=1, overwrite=True)
    assert not (task_dir / "lung_boxes.csv").exists() and (task_dir / "notes.txt").read_text() == "mine"
    rows = _read_csv(os.path.join(first, "manifest.csv"))
    on_disk = sorted(str(p.relative_to(task_dir)) for p in task_dir.rglob("*.png"))
    assert on_disk == sorted(r["image"] for r in rows)  # nothing of the seed-0 preparation left
    plan = plan_chestxray14_split(read_data_entry(os.path.join(cxr_src, "Data_Entry_2017.csv")), "ne", seed=1)
    assert sorted(r["image"].rsplit("/", 1)[1] for r in rows) == sorted(plan)


def test_cli_prepare(cxr_src, tmp_path):
    env = dict(os.environ, PAGER="cat")
    cmd = [sys.executable, "-m", "pipelines", "prepare", "chestxray14", "--source_dir", cxr_src,
           "--output_dir", str(tmp_path / "out"), "--task", "nep", "--seed", "2"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "| class | train | val | test | total |" in proc.stdout and str(tmp_path / "out" / "nep") in proc.stdout
    rows = _read_csv(tmp_path / "out" / "nep" / "manifest.csv")
    plan = plan_chestxray14_split(read_data_entry(os.path.join(cxr_src, "Data_Entry_2017.csv")), "nep", seed=2)
    assert {r["image"].rsplit("/", 1)[1]: (r["split"], r["finding"]) for r in rows} == plan

    proc = subprocess.run(cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=180)
    assert proc.returncode != 0 and "exists and is not empty" in proc.stdout  # one line, no traceback
    assert "Traceback" not in proc.stdout



def test_cli_prepare_help(monkeypatch, capsys):
    import pipelines.bundles.guards as guards

    monkeypatch.setattr(guards, "install_excepthook", lambda *a, **k: None)  # keep this process's hooks
    monkeypatch.setenv("PAGER", "cat")
    with pytest.raises(SystemExit) as info:
        main(["prepare", "chestxray14", "--help"])
    assert info.value.code == 0
    out = "".join(capsys.readouterr())  # fire writes the help to stderr
    for text in ("SOURCE_DIR", "OUTPUT_DIR", "TASK", "--seed", "--link", "--overwrite", "Prepare NIH ChestX-ray14"):
        assert text in out
