from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, CheckpointSaver, ValidationHandler

from pipelines.handlers import OptimizerParamsLogger
from pipelines.handlers.checkpoints import CheckpointPruner, ResumeCheckpointLoader
from pipelines.handlers.recipes import (
    checkpoint_handlers,
    evaluation_handlers,
    training_handlers,
    validation_handlers,
)
from transforms.recipes import segmentation_transforms


def _parts():
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    return net, opt, sched, Engine(lambda e, b: None), Engine(lambda e, b: None)


def test_checkpoint_handlers_list_and_shared_state(tmp_path):
    net, opt, sched, trainer, validator = _parts()
    handlers = checkpoint_handlers(ckpt_dir=str(tmp_path), network=net, optimizer=opt, lr_scheduler=sched,
                                   trainer=trainer, validator=validator, settings={"fold": 0})
    assert [type(h) for h in handlers] == [ResumeCheckpointLoader, CheckpointSaver, CheckpointPruner]
    saver = handlers[1]
    # one state for loading and saving: the network, optimiser, scheduler, trainer, both best scores, the settings
    assert {"model", "optimizer", "lr_scheduler", "trainer", "training_best", "validation"} <= set(saver.save_dict)
    assert saver.save_dict["model"] is net and saver.save_dict["optimizer"] is opt
    no_scheduler = checkpoint_handlers(ckpt_dir=str(tmp_path), network=net, optimizer=opt, trainer=trainer,
                                       validator=validator)
    assert "lr_scheduler" not in no_scheduler[1].save_dict  # BUSI has no scheduler
    with pytest.raises(TypeError):  # named arguments only
        checkpoint_handlers(str(tmp_path), net, opt, trainer, validator)


def test_handler_lists(tmp_path):
    from monai.engines import SupervisedEvaluator

    net, opt, sched, _, _ = _parts()
    validator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=[], network=net)
    parts = dict(lr_scheduler=sched, validator=validator, optimizer=opt, log_dir=str(tmp_path))
    train = training_handlers(**parts, val_interval=2, show_progress=True)
    assert isinstance(train[1], ValidationHandler) and train[1].interval == 2
    assert type(train[-1]).__name__ == "ProgressBar"
    assert isinstance(train[-2], OptimizerParamsLogger) and train[-2].optimizer is opt
    assert len(training_handlers(**parts)) == len(train) - 1
    with pytest.raises(TypeError):  # named arguments only
        training_handlers(sched, validator, opt, str(tmp_path))
    val = validation_handlers(log_dir=str(tmp_path), ckpt_dir=str(tmp_path), network=net, label_background=True)
    assert type(val[-1]) is CheckpointSaver and val[2].label_background


def test_evaluation_handlers_load_the_checkpoint(tmp_path):
    from monai.handlers import StatsHandler

    source, target = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    torch.save({"model": source.state_dict()}, tmp_path / "model.pt")
    extra = object()
    handlers = evaluation_handlers(ckpt_path=str(tmp_path / "model.pt"), network=target, extra=[extra])
    assert [type(h) for h in handlers[:2]] == [CheckpointLoader, StatsHandler] and handlers[2] is extra
    engine = Engine(lambda e, b: None)
    handlers[0].attach(engine)
    engine.run([0], max_epochs=1)
    for a, b in zip(source.parameters(), target.parameters()):
        assert torch.equal(a, b)


def test_learning_rate_reaches_tensorboard_through_ignite(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    engine = Engine(lambda e, b: opt.step())
    OptimizerParamsLogger(opt, log_dir=str(tmp_path)).attach(engine)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: sched.step())  # after the logger: lr of each epoch
    engine.run([0], max_epochs=3)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    scalars = [(s.step, s.value) for s in events.Scalars("lr/group_0")]
    assert [step for step, _ in scalars] == [1, 2, 3]
    np.testing.assert_allclose([value for _, value in scalars], [0.5, 0.05, 0.005], rtol=1e-6)


def test_transform_stage_checks():
    with pytest.raises(ValueError, match="stage must be one of"):
        segmentation_transforms("testing")
    with pytest.raises(ValueError, match="roi_size is required"):
        segmentation_transforms("train")
    names = [type(t).__name__ for t in segmentation_transforms("train", roi_size=[8, 8, 8], flip_axes=()).transforms]
    assert "RandFlipd" not in names and "RandRotated" in names
