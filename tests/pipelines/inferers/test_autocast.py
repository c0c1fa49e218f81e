"""AutocastInferer: autocast on the batch's device, channels-last inputs, float32 outputs, inside MONAI's trainer."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from pipelines.engines import precision
from pipelines.inferers import AutocastInferer


class _Probe(nn.Module):
    """Records the input layout and the autocast state it was called under."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 2, 3, padding=1)
        self.seen: dict = {}

    def forward(self, x):
        self.seen = {
            "channels_last": x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous(),
            "autocast": torch.is_autocast_enabled("cpu"),
        }
        return {"out": self.conv(x)}


def test_off_is_the_plain_network_call():
    net, x = _Probe(), torch.randn(2, 2, 4, 5, 6)
    out = AutocastInferer()(x, net)
    assert not net.seen["channels_last"] and not net.seen["autocast"]
    torch.testing.assert_close(out["out"], net.conv(x), atol=0, rtol=0)


def test_channels_last_inputs():
    net = _Probe()
    AutocastInferer(channels_last=True)(torch.randn(2, 2, 4, 5, 6), net)
    assert net.seen["channels_last"] and not net.seen["autocast"]


def test_amp_on_a_bf16_cpu_autocasts_and_returns_float32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: True)
    net = _Probe()
    out = AutocastInferer(amp=True)(torch.randn(2, 2, 4, 5, 6), net)
    assert net.seen["autocast"] and out["out"].dtype == torch.float32


def test_amp_on_a_cpu_without_bf16_runs_float32_with_a_warning(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: False)
    precision._warn_no_bf16.cache_clear()
    net = _Probe()
    with pytest.warns(UserWarning, match="no bfloat16 instructions"):
        out = AutocastInferer(amp=True)(torch.randn(2, 2, 4, 5, 6), net)
    assert not net.seen["autocast"] and out["out"].dtype == torch.float32


def test_amp_must_be_a_boolean():
    with pytest.raises(ValueError, match="'yes'"):
        AutocastInferer(amp="yes")


def _train(channels_last: bool) -> list[float]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.InstanceNorm3d(4, affine=True), nn.PReLU(),
                        nn.Conv3d(4, 1, 3, padding=1))
    net = precision.prepare_network(net, channels_last=channels_last)
    gen = torch.Generator().manual_seed(1)
    data = [{"image": torch.randn(2, 1, 8, 8, 6, generator=gen)} for _ in range(3)]
    for d in data:
        d["label"] = (d["image"] > 0.3).float()
    losses: list[float] = []
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=2, train_data_loader=data, network=net,
        optimizer=torch.optim.Adam(net.parameters(), 1e-2), loss_function=nn.BCEWithLogitsLoss(),
        inferer=AutocastInferer(amp=False, channels_last=channels_last), decollate=False,
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    trainer.run()
    return losses


def test_channels_last_training_in_monai_trainer_follows_the_plain_run():
    plain, fast = _train(False), _train(True)
    assert len(plain) == 6 and plain[-1] < plain[0]
    assert fast == pytest.approx(plain, rel=1e-4, abs=1e-5)
