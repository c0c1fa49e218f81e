"""pipelines.bundles.distributed: one process without torchrun, a gloo group under torchrun's environment (here a
group of one, in this process), DDP wrapping with checkpoints that hold the plain network; and the handler recipes
leaving logging to rank 0."""

from __future__ import annotations

import socket
from unittest import mock

import ignite.distributed as idist
import pytest
import torch
import torch.distributed as dist
from ignite.engine import Engine
from ignite.handlers import Checkpoint, DiskSaver
from monai.data import DistributedSampler
from monai.engines import Evaluator

from pipelines.bundles import distributed
from pipelines.handlers import recipes

LAUNCH = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def no_launch(monkeypatch):
    for key in LAUNCH:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def group_of_one(monkeypatch):
    """torchrun's environment for one process, and its gloo group (destroyed afterwards)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield
    if dist.is_initialized():
        distributed.finalize()  # also resets ignite's view of the group, which later tests' handlers ask


def test_without_torchrun_everything_is_one_process(no_launch):
    net = torch.nn.Linear(3, 2)
    assert not distributed.launched()
    assert distributed.initialize() is False and not distributed.is_distributed()
    assert distributed.wrap(net) is net  # not wrapped: a run folder's multi-GPU config still runs in one process
    assert distributed.data_sampler(list(range(5))) is None
    assert (distributed.rank(), distributed.world_size(), distributed.is_rank0()) == (0, 1, True)
    assert distributed.finalize() is False
    if not torch.cuda.is_available():
        assert distributed.device() == torch.device("cpu")


def test_rank_comes_from_the_environment_before_the_group_exists(no_launch, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert (distributed.rank(), distributed.world_size(), distributed.is_rank0()) == (1, 2, False)
    assert not distributed.launched()  # no rendezvous address: not a torchrun process, nothing to join


def test_torchrun_environment_joins_a_gloo_group_and_wraps_in_ddp(group_of_one, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU (gloo) choice, on any machine
    assert distributed.launched() and distributed.initialize()
    assert dist.get_backend() == "gloo" and distributed.is_distributed()
    assert distributed.initialize()  # a second call keeps the group

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    wrapped = distributed.wrap(net)
    assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel) and wrapped.module is net

    sampler = distributed.data_sampler(list(range(5)), shuffle=False, even_divisible=False)
    assert isinstance(sampler, DistributedSampler) and list(sampler) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="0 case"):  # a process without a validation case cannot gather
        distributed.data_sampler([], shuffle=False, even_divisible=False)

    # ignite's Checkpoint (MONAI's CheckpointSaver / CheckpointLoader) saves and loads the module: no "module." keys
    engine = Engine(lambda e, b: None)
    Checkpoint({"model": wrapped}, DiskSaver(str(tmp_path), require_empty=False), filename_prefix="t")(engine)
    (path,) = tmp_path.glob("t_*.pt")
    state = torch.load(path, weights_only=True)["model"] if "model" in torch.load(path, weights_only=True) else \
        torch.load(path, weights_only=True)
    assert set(state) == set(net.state_dict())
    other = distributed.wrap(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)))
    Checkpoint.load_objects({"model": other}, torch.load(path, weights_only=True))
    assert torch.equal(other.module[0].weight, net[0].weight)

    assert idist.model_name() == "native-dist"  # ignite picked the group up (its Checkpoint asked for the rank)
    assert distributed.finalize() and not distributed.is_distributed()
    assert idist.model_name() == "serial" and idist.get_rank() == 0  # and no longer asks the destroyed group


def _names(handlers) -> list[str]:
    return [type(h).__name__ for h in handlers]


def test_recipes_leave_logging_to_rank0(monkeypatch, tmp_path):
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    validator = mock.Mock(spec=Evaluator)  # MONAI's ValidationHandler checks the type
    log_dir = tmp_path / "logs"

    monkeypatch.setattr(idist, "get_rank", lambda: 1)
    train = recipes.training_handlers(lr_scheduler=sched, validator=validator, optimizer=opt, log_dir=str(log_dir),
                                      show_progress=True)
    assert _names(train) == ["LrScheduleHandler", "ValidationHandler"]  # every rank steps and validates
    assert not train[0].print_lr
    assert recipes.validation_handlers(log_dir=str(log_dir), ckpt_dir=str(tmp_path), network=net) == []
    assert _names(recipes.evaluation_handlers(ckpt_path="m.pt", network=net, extra=["x"])) == ["CheckpointLoader",
                                                                                               "str"]
    assert not log_dir.exists()  # no TensorBoard writer was created on rank 1

    monkeypatch.setattr(idist, "get_rank", lambda: 0)
    train = recipes.training_handlers(lr_scheduler=sched, validator=validator, optimizer=opt, log_dir=str(log_dir))
    assert {"StatsHandler", "TensorBoardStatsHandler", "OptimizerParamsLogger"} <= set(_names(train))
    assert "CheckpointSaver" in _names(recipes.validation_handlers(log_dir=str(log_dir), ckpt_dir=str(tmp_path),
                                                                   network=net))
    assert "StatsHandler" in _names(recipes.evaluation_handlers(ckpt_path="m.pt", network=net))
