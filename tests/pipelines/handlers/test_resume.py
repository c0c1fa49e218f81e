"""Resume only what matches: run settings recorded in the interval checkpoints and compared before training, the
finished-run exit, the fresh start that moves old checkpoints aside, the last-two retention and the restored
best-metric states (:mod:`pipelines.handlers.checkpoints`, :func:`pipelines.handlers.recipes.checkpoint_handlers`)."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

from pipelines.handlers.checkpoints import (
    CheckpointMismatchError,
    RunSettings,
    compare_run_settings,
    interval_checkpoints,
    prune_checkpoints,
    resolve_run_settings,
)
from pipelines.handlers.recipes import checkpoint_handlers

SETTINGS = {"dataset_dir": "/data/brats", "fold": 0, "network_def#attention": "pam", "roi_size": [8, 8, 8]}


def _names(folder) -> list[str]:
    return sorted(os.path.basename(p) for p in interval_checkpoints(str(folder)))


def _run(ckpt_dir, epochs: int, settings=SETTINGS, resume: bool = True, seed: int = 0):
    """A tiny training (one parameter, 2 iterations per epoch) with the recipe's checkpoint handlers; the trainer's and
    validator's best metric are set from the epoch as MONAI's workflows would. Returns (trainer, network, epochs
    run, validator)."""
    torch.manual_seed(seed)
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    def step(engine, batch):
        opt.zero_grad()
        net(torch.ones(1, 1)).sum().backward()
        opt.step()

    trainer, validator = Engine(step), Engine(lambda e, b: None)
    for engine in (trainer, validator):
        engine.state.best_metric, engine.state.best_metric_epoch = -1, -1

    @trainer.on(Events.EPOCH_COMPLETED)
    def _best(engine):  # runs before the saver (attached first), like MONAI's metric comparison
        engine.state.best_metric, engine.state.best_metric_epoch = engine.state.epoch / 10, engine.state.epoch
        validator.state.best_metric, validator.state.best_metric_epoch = engine.state.epoch / 100, engine.state.epoch

    ran = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: ran.append(e.state.epoch))
    for handler in checkpoint_handlers(ckpt_dir=str(ckpt_dir), network=net, optimizer=opt, lr_scheduler=sched,
                                       trainer=trainer, validator=validator, settings=settings, resume=resume):
        handler.attach(trainer)
    trainer.run([0, 1], max_epochs=epochs)
    return trainer, net, ran, validator


def test_compare_run_settings_lists_each_difference_old_to_new():
    now = dict(SETTINGS, fold=1, roi_size=(8, 8, 8), **{"network_def#features": [4, 8]})
    assert compare_run_settings(SETTINGS, now) == ["fold: 0 -> 1", "network_def#features: (not set) -> [4, 8]"]
    assert compare_run_settings(SETTINGS, dict(SETTINGS)) == []
    assert RunSettings(now).differences(SETTINGS) == compare_run_settings(SETTINGS, now)


def test_resolve_run_settings_flattens_components_and_applies_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser = ConfigParser({
        "roi_size": [16, 16, 8], "fold": 0, "dataset_dir": "data", "unused": 5,
        "network_def": {"_target_": "torch.nn.Identity", "_requires_": "@fold", "patch_size": "@roi_size",
                        "depth": "$2 * 2"},
    })
    parser.update({"fold": 3})
    got = resolve_run_settings(["dataset_dir", "fold", "network_def", "roi_size", "missing"], parser=parser)
    assert got == {"dataset_dir": str(tmp_path / "data"), "fold": 3, "network_def#_target_": "torch.nn.Identity",
                   "network_def#patch_size": [16, 16, 8], "network_def#depth": 4, "roi_size": [16, 16, 8]}
    # from a config expression, the running parser is found by itself
    parser["settings"] = "$pipelines.handlers.checkpoints.RunSettings.from_config(['fold', 'roi_size'])"
    parser["imports"] = ["$import pipelines"]
    parser.parse()
    assert parser.get_parsed_content("settings").settings == {"fold": 3, "roi_size": [16, 16, 8]}


def test_keeps_the_last_two_checkpoints_and_resumes_the_newest(tmp_path, caplog):
    _run(tmp_path, epochs=3)
    assert _names(tmp_path) == ["checkpoint_epoch=2.pt", "checkpoint_epoch=3.pt"]
    state = torch.load(tmp_path / "checkpoint_epoch=3.pt", weights_only=True)
    assert state["run_settings"] == SETTINGS and state["trainer"]["iteration"] == 6  # 3 epochs of 2
    assert state["training_best"] == {"best_metric": 0.3, "best_metric_epoch": 3}
    # a leftover of an earlier process (which this process's CheckpointSaver does not know): pruned as well
    (tmp_path / "checkpoint_epoch=1.pt").write_bytes((tmp_path / "checkpoint_epoch=2.pt").read_bytes())
    with caplog.at_level(logging.INFO, logger="pipelines.handlers.checkpoints"):
        trainer, _, ran, validator = _run(tmp_path, epochs=5)
    assert ran == [4, 5]
    assert f"resuming from epoch 3 of 5 (checkpoint {tmp_path / 'checkpoint_epoch=3.pt'})" in caplog.text
    assert _names(tmp_path) == ["checkpoint_epoch=4.pt", "checkpoint_epoch=5.pt"]
    assert (trainer.state.best_metric, validator.state.best_metric) == (0.5, 0.05)


def test_resume_restores_trainer_and_validator_best_metric_before_the_first_epoch(tmp_path):
    _run(tmp_path, epochs=2)
    seen = {}
    net = torch.nn.Linear(1, 1)
    trainer, validator = Engine(lambda e, b: None), Engine(lambda e, b: None)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    handlers = checkpoint_handlers(ckpt_dir=str(tmp_path), network=net, optimizer=opt, trainer=trainer,
                                   validator=validator, settings=SETTINGS)
    handlers[0].attach(trainer)
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.update(
        train=(e.state.best_metric, e.state.best_metric_epoch), val=validator.state.best_metric, lr=opt.param_groups[0]["lr"]))
    trainer.run([0], max_epochs=3)
    assert seen == {"train": (0.2, 2), "val": 0.02, "lr": pytest.approx(0.1)}


@pytest.mark.parametrize("change, expected", [
    ({"fold": 1}, "fold: 0 -> 1"),
    ({"network_def#attention": "se"}, "network_def#attention: 'pam' -> 'se'"),
    ({"roi_size": [16, 8, 8]}, "roi_size: [8, 8, 8] -> [16, 8, 8]"),
])
def test_other_settings_are_refused_before_anything_is_loaded_or_trained(tmp_path, change, expected):
    _, trained, _, _ = _run(tmp_path, epochs=2)
    with pytest.raises(CheckpointMismatchError) as info:
        _run(tmp_path, epochs=4, settings=dict(SETTINGS, **change), seed=1)
    message = str(info.value)
    assert f"({expected})" in message and str(tmp_path / "checkpoint_epoch=2.pt") in message
    assert "--output_dir" in message and "--resume false" in message
    assert _names(tmp_path) == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"]  # nothing written or removed


def test_a_finished_run_says_so_and_trains_nothing(tmp_path, caplog):
    _, net, _, _ = _run(tmp_path, epochs=2)
    weights = net.weight.detach().clone()
    with caplog.at_level(logging.INFO, logger="pipelines.handlers.checkpoints"):
        trainer, net2, ran, _ = _run(tmp_path, epochs=2, seed=1)
    assert ran == [] and trainer.state.epoch == 2
    assert f"run in {os.path.dirname(str(tmp_path))} already finished epoch 2 of 2" in caplog.text
    assert "Use --epochs to continue or --output_dir for a new run" in caplog.text
    torch.testing.assert_close(net2.weight, weights)  # the trained weights, untouched
    assert _names(tmp_path) == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"]


def test_resume_false_moves_old_checkpoints_aside_and_starts_at_epoch_one(tmp_path):
    _run(tmp_path, epochs=2)
    (tmp_path / "model.pt").write_bytes(b"best")
    _, _, ran, _ = _run(tmp_path, epochs=1, settings=dict(SETTINGS, fold=1), resume=False)
    assert ran == [1]
    aside = [p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith("previous-")]
    assert len(aside) == 1
    assert sorted(p.name for p in aside[0].iterdir()) == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt", "model.pt"]
    assert _names(tmp_path) == ["checkpoint_epoch=1.pt"]


def test_unreadable_newest_checkpoint_falls_back_and_unrecorded_settings_warn(tmp_path, caplog):
    _run(tmp_path, epochs=2)
    (tmp_path / "checkpoint_epoch=3.pt").write_bytes(b"cut")  # a save interrupted by a crash
    with caplog.at_level(logging.INFO, logger="pipelines.handlers.checkpoints"):
        _, _, ran, _ = _run(tmp_path, epochs=3)
    assert ran == [3] and "resuming from epoch 2 of 3" in caplog.text
    old = torch.load(tmp_path / "checkpoint_epoch=3.pt", weights_only=True)
    for key in ("run_settings", "training_best"):  # as written before settings were recorded
        old.pop(key)
    torch.save(old, tmp_path / "checkpoint_epoch=3.pt")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipelines.handlers.checkpoints"):
        _, _, ran, _ = _run(tmp_path, epochs=4, settings=dict(SETTINGS, fold=2))
    assert ran == [4] and "records no run settings" in caplog.text and "has no training_best" in caplog.text


def test_prune_checkpoints_keeps_the_newest(tmp_path):
    for epoch in (1, 2, 10, 3):
        (tmp_path / f"checkpoint_epoch={epoch}.pt").write_bytes(b"")
    (tmp_path / "model.pt").write_bytes(b"")
    removed = prune_checkpoints(str(tmp_path), keep=2)
    assert sorted(os.path.basename(p) for p in removed) == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_epoch=10.pt", "checkpoint_epoch=3.pt", "model.pt"]
    with pytest.raises(ValueError):
        prune_checkpoints(str(tmp_path), keep=0)


def _validator_with_best_model_saver(folder, scores):
    """A validator whose key metric takes ``scores`` in turn, with the recipe's best-model saver (``model.pt``)."""
    from monai.handlers import CheckpointSaver

    net = torch.nn.Linear(1, 1)
    validator = Engine(lambda e, b: None)
    validator.state.best_metric, validator.state.best_metric_epoch = -1, -1
    values = iter(scores)

    @validator.on(Events.EPOCH_COMPLETED)
    def _metric(engine):  # before the saver, as MONAI's metric handlers
        engine.state.metrics["val_mean_dice"] = next(values)
        engine.state.key_metric_name = "val_mean_dice"

    CheckpointSaver(save_dir=str(folder), save_dict={"model": net}, save_key_metric=True,
                    key_metric_filename="model.pt").attach(validator)
    return validator, net


@pytest.mark.parametrize("on_disk, later_score, replaced", [
    (True, 0.5, False),  # worse than the stored best: model.pt stays
    (True, 0.9, True),  # better: replaced
    (False, 0.5, True),  # nothing saved before: the first validation saves
    ("cut", 0.5, True),  # a model.pt cut by a stopped run is replaced
])
def test_resumed_best_metric_keeps_a_better_best_model(tmp_path, on_disk, later_score, replaced):
    """After a resume the best-model saver knows the stored best score (BestMetricState seeds it), so the first
    validation no longer overwrites model.pt with a worse model."""
    from pipelines.handlers.checkpoints import BestMetricState

    if on_disk:
        torch.save({"marker": torch.tensor(8.0)}, tmp_path / "model.pt")
    if on_disk == "cut":
        (tmp_path / "model.pt").write_bytes((tmp_path / "model.pt").read_bytes()[:40])
    validator, net = _validator_with_best_model_saver(tmp_path, [later_score])
    BestMetricState(validator).load_state_dict({"best_metric": 0.8, "best_metric_epoch": 4})
    assert validator.state.best_metric == 0.8
    validator.run([0], max_epochs=1)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert ("weight" in saved) is replaced and ("marker" in saved) is (not replaced)


def test_never_validated_state_seeds_nothing(tmp_path):
    from pipelines.handlers.checkpoints import BestMetricState, seed_best_model_savers

    torch.save({"marker": torch.tensor(8.0)}, tmp_path / "model.pt")
    validator, _ = _validator_with_best_model_saver(tmp_path, [0.1])
    BestMetricState(validator).load_state_dict({"best_metric": -1, "best_metric_epoch": -1})
    validator.run([0], max_epochs=1)
    assert "weight" in torch.load(tmp_path / "model.pt", weights_only=True)
    assert seed_best_model_savers(Engine(lambda e, b: None), 0.5) == 0  # no saver attached
