"""benchmarks/training_step.py on tiny inputs: the fast path trains like eager float32 (no timing asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pipelines.engines import precision

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "training_step.py"


def _load():
    spec = importlib.util.spec_from_file_location("training_step_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fast_path_loss_matches_eager_and_result_line(capsys, monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: False)  # the float32 fast path on any CPU
    precision._warn_no_bf16.cache_clear()
    with pytest.warns(UserWarning, match="no bfloat16 instructions"):
        results = _load().main(["--size", "16", "16", "16", "--batch", "1", "--image-size", "64", "--lanet-batch", "3",
                                "--steps", "2", "--warmup", "1", "--threads", "1", "--precision", "auto"])
    assert set(results) == {"brats", "lanet"}
    for name, r in results.items():
        assert r["precision"] == "float32", name
        assert r["loss_rel_diff"] <= 1e-3 and r["within_tolerance"] == 1.0, name
        assert r["loss_eager"] > 0 and r["speedup"] > 0
    out = capsys.readouterr().out
    assert "RESULT brats_speedup=" in out and "lanet_precision=float32" in out
