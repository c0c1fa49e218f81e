"""One state-dict unwrapping for every checkpoint form: ``pipelines.handlers.checkpoints.extract_model_state``."""

from __future__ import annotations

import pytest
import torch

from pipelines.handlers.checkpoints import extract_model_state, load_weights


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))


def _assert_same_state(state: dict, net: torch.nn.Module) -> None:
    expected = net.state_dict()
    assert list(state) == list(expected) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                              "1.running_var", "1.num_batches_tracked"]
    for key, value in expected.items():
        assert torch.equal(state[key], value)


def test_every_checkpoint_form_gives_the_plain_state():
    net = _net()
    bare = net.state_dict()
    ddp_style = {"module." + k: v for k, v in bare.items()}
    forms = [
        bare,
        {"model": bare, "optimizer": {"state": {}, "param_groups": []}, "trainer": {"epoch": 3}},
        {"model": ddp_style, "optimizer": {}},
        ddp_style,
        {"state_dict": {"_orig_mod." + k: v for k, v in ddp_style.items()}},  # compiled inside DDP
        {"network": {"model": bare}},  # nested twice
        net,
        torch.nn.DataParallel(net),
    ]
    for form in forms:
        _assert_same_state(extract_model_state(form), net)


def test_a_prefix_only_some_keys_carry_is_kept():
    # a network with a submodule called "module": its keys are not a wrapper's
    state = {"module.weight": torch.ones(1), "head.weight": torch.zeros(1)}
    assert list(extract_model_state(state)) == ["module.weight", "head.weight"]
    assert extract_model_state({}) == {}
    with pytest.raises(TypeError, match="got list"):
        extract_model_state([1, 2])


@pytest.mark.parametrize("wrap_saved, wrap_target", [(False, False), (True, False), (False, True), (True, True)])
def test_load_weights_reads_ddp_and_training_states(tmp_path, wrap_saved, wrap_target):
    source, target = _net(0), _net(1)
    state = torch.nn.DataParallel(source).state_dict() if wrap_saved else source.state_dict()
    path = tmp_path / "checkpoint_epoch=2.pt"
    torch.save({"model": state, "optimizer": torch.optim.SGD(source.parameters(), lr=0.1).state_dict()}, path)
    assert not torch.equal(target[0].weight, source[0].weight)
    assert load_weights(torch.nn.DataParallel(target) if wrap_target else target, str(path)) is True
    _assert_same_state(target.state_dict(), source)
    assert load_weights(target, str(tmp_path / "missing.pt")) is False
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_weights(target, str(tmp_path / "missing.pt"), required=True)
