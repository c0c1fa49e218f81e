"""The fold ensemble averages probabilities (softmax for class logits, sigmoid for masks) and returns logits of the
mean, in the members' output layout; built from checkpoints by ``fold_ensemble``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from pipelines.predictors.ensemble import FoldEnsemble, fold_ensemble


class _Const(nn.Module):
    """Returns fixed logits / mask logits whatever the input (batch size from the input)."""

    def __init__(self, logits, seg=None):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits, dtype=torch.float32))
        self.seg = None if seg is None else nn.Parameter(torch.tensor(seg, dtype=torch.float32))

    def forward(self, x):
        logits = self.logits.expand(x.shape[0], -1)
        if self.seg is None:
            return logits
        return {"logits": logits, "seg": self.seg.expand(x.shape[0], 1, -1, -1)}


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_softmax_average_by_hand():
    # member 1: probabilities (0.5, 0.5) (equal logits); member 2: logits ln(1), ln(3) -> (0.25, 0.75)
    ens = FoldEnsemble([_Const([0.0, 0.0]), _Const([0.0, math.log(3.0)])])
    out = ens(torch.zeros(2, 1, 4, 4))
    assert out.shape == (2, 2)
    assert torch.softmax(out, 1)[0].tolist() == pytest.approx([0.375, 0.625])
    assert out[0].tolist() == pytest.approx([math.log(0.375), math.log(0.625)])


def test_dict_outputs_average_class_and_mask_probabilities():
    # masks: sigmoid 0.2 and 0.6 -> 0.4 at pixel 0; 0.9 and 0.5 -> 0.7 at pixel 1
    a = _Const([math.log(0.2), math.log(0.8)], [[_logit(0.2), _logit(0.9)]])
    b = _Const([math.log(0.6), math.log(0.4)], [[_logit(0.6), _logit(0.5)]])
    out = FoldEnsemble([a, b])(torch.zeros(1, 1, 1, 2))
    assert set(out) == {"logits", "seg"} and out["seg"].shape == (1, 1, 1, 2)
    assert torch.softmax(out["logits"], 1)[0].tolist() == pytest.approx([0.4, 0.6])
    assert torch.sigmoid(out["seg"]).flatten().tolist() == pytest.approx([0.4, 0.7])
    plain = FoldEnsemble([a, b], activations={"seg": "mean"})(torch.zeros(1, 1, 1, 2))
    assert plain["seg"].flatten().tolist() == pytest.approx([(_logit(0.2) + _logit(0.6)) / 2, (_logit(0.9)) / 2])


def test_auto_activation_is_sigmoid_for_one_channel():
    out = FoldEnsemble([_Const([_logit(0.1)]), _Const([_logit(0.3)])])(torch.zeros(1, 1))
    assert torch.sigmoid(out).item() == pytest.approx(0.2)


def test_fold_ensemble_loads_each_checkpoint(tmp_path):
    paths = []
    for i, logits in enumerate(([0.0, 0.0], [0.0, math.log(3.0)])):
        path = tmp_path / f"fold{i}.pt"
        torch.save(_Const(logits).state_dict(), path)
        paths.append(str(path))
    template = _Const([5.0, -5.0])
    ens = fold_ensemble(template, paths)
    assert not ens.training and len(ens.networks) == 2
    assert torch.softmax(ens(torch.zeros(1, 1)), 1)[0].tolist() == pytest.approx([0.375, 0.625])
    assert template.logits.tolist() == [5.0, -5.0]  # the template is copied, not filled
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        fold_ensemble(template, [paths[0], str(tmp_path / "missing.pt")])


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one"):
        FoldEnsemble([])
    with pytest.raises(ValueError, match="'tanh'"):
        FoldEnsemble([_Const([0.0])], activations={"seg": "tanh"})


class _Conv(nn.Module):
    """Input-dependent dict outputs: class logits from the mean intensity, mask logits from a 1x1 conv."""

    def __init__(self, scale: float):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.head = nn.Linear(1, 3)
        with torch.no_grad():
            self.conv.weight.fill_(scale)
            self.head.weight.copy_(torch.tensor([[1.0], [-scale], [scale]]))

    def forward(self, x):
        return {"logits": self.head(x.mean(dim=(1, 2, 3))[:, None]), "seg": self.conv(x)}


def test_not_scriptable_but_traceable_for_one_output_layout():
    """What the model card says about export: torch.jit.script refuses the ensemble, a non-strict trace of a dict
    output gives the ensemble's outputs on new inputs."""
    ens = FoldEnsemble([_Conv(1.0), _Conv(-2.0)]).eval()
    with pytest.raises(Exception):
        torch.jit.script(ens)
    traced = torch.jit.trace(ens, torch.rand(2, 1, 4, 4), strict=False)
    x = torch.rand(3, 1, 5, 5) * 4 - 2
    expected, got = ens(x), traced(x)
    for key in ("logits", "seg"):
        torch.testing.assert_close(got[key], expected[key])
