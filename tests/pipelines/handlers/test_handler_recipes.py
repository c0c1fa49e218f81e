from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from monai.handlers import CheckpointLoader, CheckpointSaver, ValidationHandler

from pipelines.handlers.recipes import (
    checkpoint_handlers,
    training_handlers,
    validation_handlers,
)
from transforms.recipes import segmentation_transforms


def _parts():
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    return net, opt, sched, Engine(lambda e, b: None), Engine(lambda e, b: None)


def test_checkpoint_handlers_resume_only_when_a_checkpoint_exists(tmp_path):
    net, opt, sched, trainer, validator = _parts()
    first = checkpoint_handlers(str(tmp_path), net, opt, sched, trainer, validator)
    assert [type(h) for h in first] == [CheckpointSaver]
    (tmp_path / "checkpoint_epoch=3.pt").write_bytes(b"")
    second = checkpoint_handlers(str(tmp_path), net, opt, sched, trainer, validator)
    assert [type(h) for h in second] == [CheckpointLoader, CheckpointSaver]
    assert second[0].load_path.endswith("checkpoint_epoch=3.pt")


def test_handler_lists(tmp_path):
    from monai.engines import SupervisedEvaluator

    net, opt, sched, _, _ = _parts()
    validator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=[], network=net)
    train = training_handlers(sched, validator, opt, str(tmp_path), val_interval=2, show_progress=True)
    assert isinstance(train[1], ValidationHandler) and train[1].interval == 2
    assert type(train[-1]).__name__ == "ProgressBar"
    assert len(training_handlers(sched, validator, opt, str(tmp_path))) == len(train) - 1
    val = validation_handlers(str(tmp_path), str(tmp_path), net, label_background=True)
    assert type(val[-1]) is CheckpointSaver and val[2].label_background


def test_transform_stage_checks():
    with pytest.raises(ValueError, match="stage must be one of"):
        segmentation_transforms("testing")
    with pytest.raises(ValueError, match="roi_size is required"):
        segmentation_transforms("train")
    names = [type(t).__name__ for t in segmentation_transforms("train", roi_size=[8, 8, 8], flip_axes=()).transforms]
    assert "RandFlipd" not in names and "RandRotated" in names
