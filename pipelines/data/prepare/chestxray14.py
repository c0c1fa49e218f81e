"""NIH ChestX-ray14 preparation for the localisation-aware chest X-ray classifier (Wu, Japkowicz, Gilbert, Corizzo,
Data Mining and Knowledge Discovery 40(4):47, 2026).

The raw download (``<source>/images/*.png`` or ``<source>/images_001/images/*.png`` ... and
``<source>/Data_Entry_2017.csv``) becomes, for one task of :data:`transforms.chestxray.CXR_TASKS`,

```
<output>/<task>/{train,val,test}/<class folder>/<Image Index>   links to (or copies of) the source images
<output>/<task>/manifest.csv                                    image, split, finding, label, patient_id, source
<output>/<task>/counts.csv, counts.md                           images and patients per split and class
```

with the split rule of the paper: single-label images only, patient-disjoint 60/20/20 splits, ``No Finding`` images
only from patients never diagnosed with a task disease, classes balanced 1:1 in every split with a fixed seed
(:func:`plan_chestxray14_split`). :func:`read_data_entry` reads the metadata table, :func:`prepare_chestxray14`
writes the folders; ``python -m pipelines prepare chestxray14 --source_dir ... --output_dir ... --task ne`` runs it.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from transforms.chestxray import CXR_TASKS, class_folder

from ..datalists.chestxray14 import (
    CHESTXRAY14_CSV,
    _normalise_patient_id,
    chestxray14_images,
)
from ..datalists.common import check_root
from ..errors import DatasetError

__all__ = [
    "CXR_SPLITS",
    "COUNTS_CSV",
    "COUNTS_MD",
    "MANIFEST_CSV",
    "plan_chestxray14_split",
    "prepare_chestxray14",
    "read_data_entry",
]

logger = logging.getLogger(__name__)

#: The splits of a prepared task, in order.
CXR_SPLITS = ("train", "val", "test")
#: File names written into ``<output>/<task>``.
MANIFEST_CSV = "manifest.csv"
COUNTS_CSV = "counts.csv"
COUNTS_MD = "counts.md"
#: The lung-box cache of a task folder (``python -m pipelines lung-boxes``); its paths name the splits, so a new
#: preparation with ``overwrite`` removes it.
_LUNG_BOXES_CSV = "lung_boxes.csv"

_NO_FINDING = "No Finding"
_REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
_MANIFEST_COLUMNS = ("image", "split", "finding", "label", "patient_id", "source")
_NIH_LAYOUT = f"<source>/images/*.png (or <source>/images_001/images/*.png, ...) and <source>/{CHESTXRAY14_CSV}"


# ---------------------------------------------------------------------------------------------------------- reading
def read_data_entry(csv_path: str) -> list[dict]:
    """Read the NIH metadata table ``Data_Entry_2017.csv``: every row, multi-label ones included.

    Columns are found by name in the header (``Image Index``, ``Finding Labels``, ``Patient ID``); others, and the
    odd ones of the real file (the unquoted ``OriginalImage[Width,Height]`` and the trailing empty column), are
    ignored. Blank lines are skipped.

    Args:
        csv_path: path of the table.

    Returns:
        One dict per row, in file order: ``{"image": <Image Index>, "findings": [<finding>, ...] (the
        ``|``-separated labels, in the order of the file), "patient_id": str}``; a numeric patient id is zero-padded
        to 8 digits (``"1"`` -> ``"00000001"``), matching the image names.

    Raises:
        DatasetError: a missing or unreadable file, missing columns, no rows, or a malformed row (too few columns, an
            empty image name, finding or patient id, an image name with a folder in it, an image listed twice); the
            message names the file and the line.
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise DatasetError(f"metadata file {csv_path} does not exist; expected {_NIH_LAYOUT}.")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{csv_path}: not a readable CSV table ({type(e).__name__}: {e}).") from e
    if not rows:
        raise DatasetError(f"{csv_path} is empty; expected the header {', '.join(_REQUIRED_COLUMNS)}, ... and a row "
                           "per image.")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in _REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{csv_path}, line 1: the header lacks the column(s) {missing}; it is {rows[0]}.")
    col = {c: header.index(c) for c in _REQUIRED_COLUMNS}
    width = max(col.values()) + 1

    entries: list[dict] = []
    first_line: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not "".join(row).strip():
            continue
        where = f"{csv_path}, line {line}"
        if len(row) < width:
            raise DatasetError(f"{where}: expected at least {width} columns, got {len(row)}: {row}.")
        name = row[col["Image Index"]].strip()
        findings = [s.strip() for s in row[col["Finding Labels"]].split("|")]
        patient = row[col["Patient ID"]].strip()
        if not name:
            raise DatasetError(f"{where}: empty Image Index.")
        if name != os.path.basename(name) or name in (".", "..") or "/" in name or "\\" in name:
            raise DatasetError(f"{where}: Image Index {name!r} is not a plain file name.")
        if not all(findings):
            raise DatasetError(f"{where}: empty finding in Finding Labels {row[col['Finding Labels']]!r}.")
        if not patient:
            raise DatasetError(f"{where}: empty Patient ID.")
        if name in first_line:
            raise DatasetError(f"{where}: image {name} is listed twice (also on line {first_line[name]}).")
        first_line[name] = line
        entries.append({"image": name, "findings": findings, "patient_id": _normalise_patient_id(patient)})
    if not entries:
        raise DatasetError(f"{csv_path} has a header but no rows.")
    return entries


# --------------------------------------------------------------------------------------------------------- planning
def _task_classes(task: str) -> tuple[str, ...]:
    if task not in CXR_TASKS:
        raise ValueError(f"unknown chest X-ray task {task!r}; choose one of {sorted(CXR_TASKS)}.")
    return tuple(CXR_TASKS[task])


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    values = np.asarray([float(f) for f in fractions], dtype=np.float64)
    if values.shape != (len(CXR_SPLITS),) or (values < 0).any() or values[0] <= 0 or abs(values.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"fractions must be {len(CXR_SPLITS)} non-negative numbers for {CXR_SPLITS} summing to 1 with a positive "
            f"train fraction, got {tuple(fractions)}."
        )
    return values


def _assign_groups(groups: Mapping[str, np.ndarray], fractions: np.ndarray, rng: np.random.Generator) -> dict[str, str]:
    """Split of each group (patient): largest first (a seeded shuffle orders groups of equal size), each to the split
    where it most reduces the squared deviation of the per-class image counts from their targets
    (``fraction * class total``, deviations normalised by the class total); ties go to the earlier split."""
    names = sorted(groups)
    if not names:
        return {}
    names = [names[i] for i in rng.permutation(len(names))]
    names.sort(key=lambda n: -int(groups[n].sum()))  # stable: the shuffle breaks ties
    counts = np.stack([np.asarray(groups[n], dtype=np.float64) for n in names])
    totals = counts.sum(axis=0)
    weight = 1.0 / np.maximum(totals, 1.0)
    target = fractions[:, None] * totals[None]
    assigned = np.zeros_like(target)
    closed = fractions <= 0
    out: dict[str, str] = {}
    for name, vector in zip(names, counts):
        # adding v to split k changes the error sum_c w_c (a_kc - t_kc)^2 by sum_c w_c (2 v_c (a_kc - t_kc) + v_c^2)
        gain = (target - assigned) @ (vector * weight)
        gain[closed] = -np.inf
        k = int(np.argmax(gain))
        assigned[k] += vector
        out[name] = CXR_SPLITS[k]
    return out


def plan_chestxray14_split(
    entries: Iterable[Mapping], task: str, seed: int = 0, fractions: Sequence[float] = (0.6, 0.2, 0.2)
) -> dict[str, tuple[str, str]]:
    """Choose the images of a chest X-ray task and their split (the data preparation of Wu et al. 2026).

    The exact rule, for the classes ``CXR_TASKS[task]`` (``No Finding`` first, then the task's diseases):

    1. Candidates are the single-label rows whose finding is a class of the task (rows with several findings, and
       rows of other findings, are never images of the task).
    2. A patient is *diseased* when any of their rows, multi-label rows included, names a task disease. Disease
       images are the single-label disease candidates; ``No Finding`` images are the ``No Finding`` candidates of
       patients who are not diseased (so the two patient sets are disjoint).
    3. Patients are split, all images of a patient in one split (a patient with images of two task diseases is one
       group): the disease patients among themselves, then the ``No Finding`` patients among themselves, each aiming
       at ``fractions`` of the images of every class. Patients are taken largest first (number of images; a seeded
       shuffle orders patients of equal size), and each goes to the split where it most reduces the squared
       deviation of the per-class image counts from ``fraction * class total`` (deviations normalised by the class
       total; ties to the earlier split of train, val, test). Image fractions are thus met to within about one
       patient's images; on tiny tables a split may stay empty.
    4. In every split each class is subsampled, without replacement and seeded, to the number of images of the
       smallest class of that split (1:1 balance; a split missing a class becomes empty).

    All randomness comes from ``numpy.random.default_rng(seed)``, used in that order on inputs sorted by name, so a
    seed gives the same plan whatever the order of ``entries``.

    Args:
        entries: rows of the metadata table, dicts with ``image`` (Image Index), ``findings`` (list of str) and
            ``patient_id`` (as :func:`read_data_entry` returns them).
        task: a key of :data:`transforms.chestxray.CXR_TASKS` (``ne``, ``np``, ``nep``, ``neps``).
        seed: non-negative seed of the shuffle and the subsampling.
        fractions: train, val and test fractions of the images (non-negative, summing to 1, train > 0).

    Returns:
        ``{Image Index: (split, finding)}`` of the selected images only, sorted by image name.

    Raises:
        ValueError: an unknown task, bad fractions or a negative seed.
        DatasetError: an image listed twice in ``entries``, or a class of the task without any image.
    """
    classes = _task_classes(task)
    weights = _check_fractions(fractions)
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}.")
    diseases = classes[1:]

    candidates: dict[str, tuple[str, str]] = {}  # image -> (patient, finding)
    patients: dict[str, str] = {}
    diseased: set[str] = set()
    for entry in entries:
        name, patient, findings = str(entry["image"]), str(entry["patient_id"]), [str(f) for f in entry["findings"]]
        if name in patients:
            raise DatasetError(f"image {name} is listed twice in the metadata table.")
        patients[name] = patient
        if any(f in diseases for f in findings):
            diseased.add(patient)
        if len(findings) == 1 and findings[0] in classes:
            candidates[name] = (patient, findings[0])

    disease_groups: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(diseases), np.int64))
    normal_groups: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(1, np.int64))
    for patient, finding in candidates.values():
        if finding == _NO_FINDING:
            if patient not in diseased:
                normal_groups[patient][0] += 1
        else:
            disease_groups[patient][diseases.index(finding)] += 1

    rng = np.random.default_rng(seed)
    split_of = _assign_groups(disease_groups, weights, rng)
    split_of.update(_assign_groups(normal_groups, weights, rng))

    pools: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name in sorted(candidates):
        patient, finding = candidates[name]
        if patient in split_of and (finding != _NO_FINDING or patient not in diseased):
            pools[split_of[patient], finding].append(name)
    for finding in classes:
        if not any(pools[split, finding] for split in CXR_SPLITS):
            extra = " from patients never diagnosed with " + " or ".join(diseases) if finding == _NO_FINDING else ""
            raise DatasetError(f"the metadata table has no single-label {finding!r} images{extra}; task {task!r} "
                               f"needs images of each of {list(classes)}.")

    plan: dict[str, tuple[str, str]] = {}
    for split in CXR_SPLITS:
        size = min(len(pools[split, finding]) for finding in classes)
        for finding in classes:
            pool = pools[split, finding]
            keep = sorted(rng.choice(len(pool), size=size, replace=False)) if pool else []
            plan.update({pool[i]: (split, finding) for i in keep})
    return dict(sorted(plan.items()))


# ---------------------------------------------------------------------------------------------------------- writing
def _check_task_dir(source: str, task_dir: str, overwrite: bool) -> None:
    """Refuse a task folder inside the source folder or containing it (``overwrite`` empties it), a file, or a
    non-empty folder without ``overwrite``."""
    src, out = Path(source).resolve(), Path(task_dir).resolve()
    if out == src or src in out.parents:
        raise DatasetError(f"output folder {out} is inside the source folder {src}; choose another --output_dir: "
                           "preparing never writes into the source.")
    if out in src.parents:
        raise DatasetError(f"the source folder {src} is inside the output task folder {out}; choose another "
                           "--output_dir: preparing never touches the source.")
    if os.path.exists(task_dir) and not os.path.isdir(task_dir):
        raise DatasetError(f"output task folder {task_dir} exists and is not a folder.")
    if not overwrite and os.path.isdir(task_dir) and os.listdir(task_dir):
        raise DatasetError(f"output task folder {task_dir} exists and is not empty; pass overwrite=True "
                           "(--overwrite) to replace the preparation in it, or choose another --output_dir.")


def _clear_task_dir(task_dir: str) -> None:
    """Remove what a preparation writes into a task folder (``overwrite``)."""
    if not os.path.isdir(task_dir) or not os.listdir(task_dir):
        return
    for name in (*CXR_SPLITS, MANIFEST_CSV, COUNTS_CSV, COUNTS_MD, _LUNG_BOXES_CSV):
        path = os.path.join(task_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
    logger.info("overwrite: removed the previous preparation in %s", task_dir)


def _place(source: str, target: str, link: bool) -> bool:
    """Symlink ``target`` -> ``source`` (absolute) if ``link``; copy where linking fails. Returns whether linked."""
    if link:
        try:
            os.symlink(source, target)
            return True
        except (OSError, NotImplementedError) as e:
            logger.warning("cannot create the link %s (%s: %s); copying the images instead", target,
                           type(e).__name__, e)
    shutil.copy2(source, target)
    return False


def _counts(rows: Sequence[Mapping[str, str]], classes: Sequence[str]) -> list[dict]:
    table = []
    for split in CXR_SPLITS:
        for label, finding in enumerate(classes):
            chosen = [r for r in rows if r["split"] == split and r["finding"] == finding]
            table.append({"split": split, "finding": finding, "label": label, "images": len(chosen),
                          "patients": len({r["patient_id"] for r in chosen})})
    return table


def _counts_markdown(rows: Sequence[Mapping[str, str]], task: str, classes: Sequence[str], seed: int) -> str:
    def cell(chosen: Sequence[Mapping[str, str]]) -> str:
        return f"{len(chosen)} ({len({r['patient_id'] for r in chosen})})"

    lines = [
        f"# NIH ChestX-ray14, task `{task}` ({', '.join(classes)}), seed {seed}",
        "",
        "Images (patients) per split and class; the splits are patient-disjoint and every split is class-balanced.",
        "",
        "| class | " + " | ".join(CXR_SPLITS) + " | total |",
        "|---|" + "---:|" * (len(CXR_SPLITS) + 1),
    ]
    for finding in (*classes, None):
        chosen = [r for r in rows if finding is None or r["finding"] == finding]
        per_split = [cell([r for r in chosen if r["split"] == split]) for split in CXR_SPLITS]
        lines.append(f"| {finding or 'all'} | " + " | ".join(per_split) + f" | {cell(chosen)} |")
    return "\n".join(lines) + "\n"


def prepare_chestxray14(
    source_dir: str,
    output_dir: str,
    task: str,
    seed: int = 0,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    link: bool = True,
    overwrite: bool = False,
) -> str:
    """Prepare NIH ChestX-ray14 for a chest X-ray task: ``<output_dir>/<task>/{train,val,test}/<class folder>/``.

    Reads ``<source_dir>/Data_Entry_2017.csv`` (:func:`read_data_entry`), selects and splits the images
    (:func:`plan_chestxray14_split`: single-label, patient-disjoint 60/20/20, No Finding only from never-diseased
    patients, 1:1 balanced per split) and writes

    * ``<task>/<split>/<class folder>/<Image Index>``: a symbolic link holding the absolute path of the source image
      (so the prepared folder may move, the source may not), or a copy where the file system refuses links (or with
      ``link=False``); class folders are :func:`transforms.chestxray.class_folder` names (``No_Finding``, ...);
    * ``<task>/manifest.csv`` (written last): ``image`` (path relative to the task folder with ``/``, e.g.
      ``train/Effusion/00000002_000.png``), ``split``, ``finding``, ``label`` (index in ``CXR_TASKS[task]``),
      ``patient_id``, ``source`` (absolute path of the source image);
    * ``<task>/counts.csv`` (``split``, ``finding``, ``label``, ``images``, ``patients``) and ``<task>/counts.md``
      (the same as a table with totals).

    The source is only read. A progress bar is shown for large sets on a terminal, and a summary is logged.

    Args:
        source_dir: the NIH download: ``images/*.png`` (or ``images_001/images/*.png``, ...) and the metadata table.
        output_dir: where the task folder goes (created); not inside ``source_dir``.
        task: ``ne``, ``np``, ``nep`` or ``neps`` (:data:`transforms.chestxray.CXR_TASKS`).
        seed: seed of the split and the balancing.
        fractions: train, val, test fractions of the images.
        link: link the images (copy only where linking fails); False copies them.
        overwrite: replace an existing preparation in ``<output_dir>/<task>`` (its split folders, manifest, counts
            and the lung-box cache ``lung_boxes.csv``, whose paths name the old splits); other files are kept.

    Returns:
        The task folder ``<output_dir>/<task>`` (absolute).

    Raises:
        DatasetError: a missing source folder or metadata table, a malformed table, selected images missing from the
            image folders (their count and the first few names), no image of a class, an output folder inside the
            source (or containing it), or a non-empty task folder without ``overwrite``.
        ValueError: an unknown task, bad fractions or seed.
    """
    classes = _task_classes(task)
    source = check_root(source_dir, "ChestX-ray14", _NIH_LAYOUT)
    task_dir = os.path.join(os.path.abspath(os.fspath(output_dir)), task)
    _check_task_dir(source, task_dir, overwrite)
    entries = read_data_entry(os.path.join(source, CHESTXRAY14_CSV))
    plan = plan_chestxray14_split(entries, task, seed=seed, fractions=fractions)
    images = chestxray14_images(source)
    missing = [name for name in plan if name not in images]
    if missing:
        first = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DatasetError(
            f"{len(missing)} selected image(s) of {os.path.join(source, CHESTXRAY14_CSV)} are missing from the image "
            f"folders of {source} (expected {_NIH_LAYOUT}): {first}."
        )
    if overwrite:
        _clear_task_dir(task_dir)

    patient_of = {e["image"]: e["patient_id"] for e in entries}
    rows = []
    for split in CXR_SPLITS:
        for label, finding in enumerate(classes):
            names = [n for n, (s, f) in plan.items() if s == split and f == finding]
            os.makedirs(os.path.join(task_dir, split, class_folder(finding)), exist_ok=True)
            rows += [{"image": f"{split}/{class_folder(finding)}/{n}", "split": split, "finding": finding,
                      "label": str(label), "patient_id": patient_of[n], "source": os.path.abspath(images[n])}
                     for n in names]
    linked = 0
    progress = tqdm(rows, desc=f"prepare chestxray14 {task}", unit="image", disable=True if len(rows) < 1000 else None)
    for row in progress:
        link_now = _place(row["source"], os.path.join(task_dir, *row["image"].split("/")), link)
        linked += link_now
        link = link and link_now  # one refusal is enough: copy the rest

    with open(os.path.join(task_dir, COUNTS_CSV), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["split", "finding", "label", "images", "patients"])
        writer.writeheader()
        writer.writerows(_counts(rows, classes))
    summary = _counts_markdown(rows, task, classes, seed)
    with open(os.path.join(task_dir, COUNTS_MD), "w") as f:
        f.write(summary)
    with open(os.path.join(task_dir, MANIFEST_CSV), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(_MANIFEST_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    for split, fraction in zip(CXR_SPLITS, _check_fractions(fractions)):
        if fraction > 0 and not any(r["split"] == split for r in rows):
            logger.warning("task %s: the %s split is empty (too few patients for every class in it)", task, split)
    logger.info("prepared ChestX-ray14 task %s in %s: %d images (%d linked, %d copied)\n%s", task, task_dir, len(rows),
                linked, len(rows) - linked, summary)
    return task_dir
