"""Progress bars on interactive terminals only, and the sweep / cross-validation lines that say what runs."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from ignite.engine import Engine
from ignite.handlers import ProgressBar

from pipelines.handlers import (
    attach_progress,
    overall_progress,
    progress_enabled,
    progress_handlers,
)

REPO = Path(__file__).resolve().parents[3]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("progress, stream, expected", [
    ("auto", io.StringIO(), False),  # a log file, a CI pipe
    ("auto", Terminal(), True),
    ("on", io.StringIO(), True),
    (True, io.StringIO(), True),  # YAML reads an unquoted `on` as true
    ("off", Terminal(), False),
    (False, Terminal(), False),
    (None, Terminal(), True),
])
def test_progress_enabled(progress, stream, expected):
    assert progress_enabled(progress, stream) is expected
    assert len(progress_handlers(progress, stream)) == int(expected)


def test_auto_under_pytest_is_quiet_and_bad_values_are_refused():
    assert progress_enabled("auto") is False  # pytest captures stderr: not a terminal
    with pytest.raises(ValueError, match="progress must be one of"):
        progress_enabled("sometimes")


def test_attach_only_when_enabled():
    log = io.StringIO()
    quiet = Engine(lambda e, b: None)
    assert attach_progress(quiet, "auto", log) is None
    quiet.run([0, 1, 2], max_epochs=2)
    assert log.getvalue() == ""
    terminal = Terminal()
    forced = Engine(lambda e, b: None)
    assert isinstance(attach_progress(forced, "on", terminal, persist=True), ProgressBar)
    forced.run([0, 1, 2], max_epochs=2)
    shown = terminal.getvalue()
    assert "Epoch [1/2]" in shown and "Epoch [2/2]" in shown and "3/3" in shown  # epochs and iterations


def test_overall_progress_wraps_only_when_enabled():
    items = [1, 2, 3]
    assert overall_progress(items, "off") is items
    wrapped = overall_progress(items, "on", desc="sweep")
    assert wrapped is not items and list(wrapped) == items


def test_sweep_logs_which_cell_runs(tmp_path, monkeypatch, caplog):
    import pipelines.experiments.sweep as sweep

    def fake_cell(cell, output_dir, overrides, dataset=None):  # a finished cell leaves result.json, as run_cell
        row = {"dataset": cell.dataset, "backbone": cell.backbone, "attention": cell.attention, "fold": cell.fold,
               "val_dice": 0.5, "params": 1, "sec_per_step": 0.1}
        (Path(output_dir) / "result.json").write_text(json.dumps(row))
        return row

    monkeypatch.setattr(sweep, "run_cell", fake_cell)
    monkeypatch.setattr(sweep, "plot_bars", lambda *a, **k: None)
    caplog.set_level(logging.INFO, logger="pipelines.experiments.sweep")
    path = str(REPO / "configs" / "experiments" / "attention_ablation.yaml")
    spec = sweep.load_sweep(path, "demo", output_dir=str(tmp_path))
    cells = sweep.expand_cells(spec)
    sweep.run_sweep(path, "demo", output_dir=str(tmp_path), progress="off")
    first, last = cells[0], cells[-1]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"[sweep] cell 1/{len(cells)}: {first.dataset} {first.backbone} {first.attention} "
                            f"fold {first.fold}") for m in messages)
    assert any(f"cell {len(cells)}/{len(cells)}: {last.dataset} {last.backbone} {last.attention} fold {last.fold}"
               in m for m in messages)
    caplog.clear()
    sweep.run_sweep(path, "demo", output_dir=str(tmp_path), progress="off")  # finished cells are skipped, and said
    assert sum("(finished, skipped)" in r.getMessage() for r in caplog.records) == len(cells)


def test_cross_validation_logs_which_fold_runs(tmp_path, monkeypatch, caplog):
    import pipelines.experiments.crossval as crossval

    calls = []
    monkeypatch.setattr(crossval, "_workflow", lambda configs, files, run_id, overrides: calls.append(run_id))
    caplog.set_level(logging.INFO, logger="pipelines.experiments.crossval")
    crossval.cross_validate("cxr_lung_segmentation", num_folds=3, folds=[0, 2], output_dir=str(tmp_path),
                            evaluate=False, progress="off")
    messages = [r.getMessage() for r in caplog.records]
    assert "[cross-validate] fold 1/2: cxr_lung_segmentation fold 0 of 3" in messages
    assert "[cross-validate] fold 2/2: cxr_lung_segmentation fold 2 of 3" in messages
    assert calls == ["training", "training"]
