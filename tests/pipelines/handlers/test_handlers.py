from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from pipelines.handlers import (
    EpochPictureHandler,
    TensorBoardSliceHandler,
    overlay_rgb,
)
from pipelines.handlers.checkpoints import (
    BestMetricState,
    attach_handlers,
    latest_checkpoint,
)
from pipelines.metrics import PerChannelMeanDice
from pipelines.predictors import brats_output_name


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_per_channel_dice_reports_each_channel_and_mean():
    rng = np.random.default_rng(0)
    preds = [rng.random((3, 6, 6, 4)) > 0.5 for _ in range(2)]
    labels = [rng.random((3, 6, 6, 4)) > 0.5 for _ in range(2)]
    batches = [(torch.as_tensor(p[None]).float(), torch.as_tensor(l[None]).float()) for p, l in zip(preds, labels)]
    engine = Engine(lambda e, b: b)
    PerChannelMeanDice(channel_names=("TC", "WT", "ET")).attach(engine, "val_mean_dice")
    engine.run(batches, max_epochs=1)
    per_case = np.array([[_dice(p[c], l[c]) for c in range(3)] for p, l in zip(preds, labels)])
    expected = per_case.mean(axis=0)
    for name, value in zip(("TC", "WT", "ET"), expected):
        assert engine.state.metrics[f"val_mean_dice_{name}"] == pytest.approx(value, abs=1e-6)
    assert engine.state.metrics["val_mean_dice"] == pytest.approx(expected.mean(), abs=1e-6)
    assert engine.state.metric_details["val_mean_dice"].shape == (2, 3)


def test_per_channel_dice_empty_mask_convention_and_background():
    """Channel 1 empty in both (Dice 1), channel 2 empty in the label only (Dice 0): no case drops out, unlike
    MONAI's DiceMetric(ignore_empty=True), and the result is the evaluation's SegmentationMetricsHandler Dice."""
    from pipelines.metrics import SegmentationMetricsHandler

    pred = torch.zeros(1, 3, 4, 4, 2)
    label = torch.zeros(1, 3, 4, 4, 2)
    pred[0, 0, :2] = 1  # 16 voxels
    label[0, 0, :3] = 1  # 24 voxels, 16 shared: Dice 32 / 40
    pred[0, 2, 0, 0, 0] = 1
    engine = Engine(lambda e, b: b)
    PerChannelMeanDice(channel_names=("a", "b", "c")).attach(engine, "d")
    SegmentationMetricsHandler(class_names=("a", "b", "c"), metrics=("dice",), spacing=(1.0, 1.0, 1.0)).attach(
        engine, "eval")
    engine.run([(pred, label)], max_epochs=1)
    assert [engine.state.metrics[f"d_{c}"] for c in "abc"] == [0.8, 1.0, 0.0]
    assert engine.state.metrics["d"] == pytest.approx(0.6, abs=1e-12)
    assert engine.state.metrics["d"] == pytest.approx(engine.state.metrics["eval"], abs=1e-12)

    engine = Engine(lambda e, b: b)
    PerChannelMeanDice(channel_names=("b", "c"), include_background=False).attach(engine, "fg")
    engine.run([(pred, label)], max_epochs=1)
    assert (engine.state.metrics["fg_b"], engine.state.metrics["fg_c"], engine.state.metrics["fg"]) == (1.0, 0.0, 0.5)


def test_per_channel_dice_checks_names():
    engine = Engine(lambda e, b: b)
    PerChannelMeanDice(channel_names=("a", "b")).attach(engine, "d")
    with pytest.raises(ValueError, match="3 channels but 2 channel names"):
        engine.run([(torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4))], max_epochs=1)


def test_overlay_colours_only_masked_pixels():
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    mask = np.zeros((1, 4, 4))
    mask[0, 1, 2] = 1
    rgb = overlay_rgb(image, mask, alpha=1.0)
    assert rgb.shape == (3, 4, 4) and rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_allclose(rgb[:, 1, 2], [0.9, 0.2, 0.2])
    np.testing.assert_allclose(rgb[:, 0, 0], [0, 0, 0])  # grey (normalised) elsewhere
    np.testing.assert_allclose(rgb[:, 3, 3], [1, 1, 1])


class _Writer:
    def __init__(self):
        self.images, self.scalars = [], []

    def add_image(self, tag, img, global_step):
        self.images.append((tag, img, global_step))

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass


def test_slice_handler_picks_the_most_labelled_slice_once_per_epoch():
    image = torch.zeros(4, 8, 8, 6)
    image[:, :, :, 4] = 1.0
    label = torch.zeros(3, 8, 8, 6)
    label[:, 2:5, 2:5, 4] = 1
    writer = _Writer()
    handler = TensorBoardSliceHandler(summary_writer=writer)
    engine = Engine(lambda e, b: [{"image": image, "label": label, "pred": label}])
    handler.attach(engine)
    engine.run([0, 1, 2], max_epochs=2)
    assert [step for _, _, step in writer.images] == [1, 2]
    picture = writer.images[0][1]
    assert picture.shape == (3, 8, 8 * (4 + 2))
    assert picture[:, :, :32].min() == pytest.approx(0.0)  # slice 4 is constant -> normalised to 0
    assert (picture[:, 2:5, 32 + 2:32 + 5] != picture[:, 0:1, 32:33]).any()  # label overlay coloured


class _Counter(EpochPictureHandler):
    """Picture = the iteration's output (a constant grey level); None at iteration 1 of epoch 3."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = 0

    def make_engine_picture(self, engine):
        self.calls += 1
        if engine.state.epoch == 3:
            return None
        return np.full((3, 2, 2), engine.state.output, np.float32)


def test_picture_base_needs_the_picture_hook(tmp_path):
    with pytest.raises(TypeError, match="make_engine_picture"):  # abstract: a subclass must make the picture
        EpochPictureHandler(log_dir=str(tmp_path))


def test_picture_base_once_per_run_step_is_epoch_rank0_writes():
    writer = _Writer()
    handler = _Counter(summary_writer=writer, tag="grey")
    engine = Engine(lambda e, b: b)
    handler.attach(engine)
    engine.run([0.25, 0.5, 0.75], max_epochs=3)
    # the first iteration of each epoch, step = epoch; epoch 3 had no picture (None) and nothing else was drawn
    assert [(tag, step, float(img[0, 0, 0])) for tag, img, step in writer.images] == [("grey", 1, 0.25), ("grey", 2, 0.25)]
    assert handler.calls == 3
    handler.close()  # a writer passed in is not closed: it still takes images
    writer.add_image("x", None, 0)


def test_picture_base_on_other_ranks_creates_no_writer_and_draws_nothing(tmp_path, monkeypatch):
    import ignite.distributed as idist

    monkeypatch.setattr(idist, "get_rank", lambda: 1)
    handler = _Counter(log_dir=str(tmp_path / "tb"))
    engine = Engine(lambda e, b: b)
    handler.attach(engine)
    engine.run([0.5], max_epochs=2)
    assert handler._writer is None and handler.calls == 0 and not (tmp_path / "tb").exists()
    handler.close()


def test_picture_base_creates_and_closes_its_writer(tmp_path):
    handler = _Counter(log_dir=str(tmp_path / "tb"))
    engine = Engine(lambda e, b: b)
    handler.attach(engine)
    engine.run([0.5], max_epochs=1)
    handler.close()
    assert handler.internal_writer and len(os.listdir(tmp_path / "tb")) == 1  # one event file


def test_latest_checkpoint(tmp_path):
    assert latest_checkpoint(str(tmp_path / "missing")) is None
    for name in ("checkpoint_epoch=2.pt", "checkpoint_epoch=10.pt", "model.pt", "checkpoint_epoch=x.pt"):
        (tmp_path / name).write_bytes(b"")
    assert os.path.basename(latest_checkpoint(str(tmp_path))) == "checkpoint_epoch=10.pt"


def test_best_metric_state_round_trip_and_attach_handlers():
    source = Engine(lambda e, b: None)
    source.state.best_metric, source.state.best_metric_epoch = 0.75, 3
    target = Engine(lambda e, b: None)
    BestMetricState(target).load_state_dict(BestMetricState(source).state_dict())
    assert (target.state.best_metric, target.state.best_metric_epoch) == (0.75, 3)

    calls = []

    class _H:
        def attach(self, engine):
            engine.add_event_handler(Events.STARTED, lambda e: calls.append("started"))

    engine = Engine(lambda e, b: None)
    assert attach_handlers(engine, [None, _H()]) is engine
    engine.run([0], max_epochs=1)
    assert calls == ["started"]


@pytest.mark.parametrize(
    "filename, subject",
    [
        ("/d/Brats18_2013_2_1/Brats18_2013_2_1_t1.nii.gz", "Brats18_2013_2_1"),
        (["/d/C/C_t1ce.nii", "/d/C/C_t2.nii"], "C"),
        ("/d/Case_flair.nii.gz", "Case"),
    ],
)
def test_brats_output_name(filename, subject):
    assert brats_output_name({"filename_or_obj": filename}) == {"subject": subject, "idx": None}


def test_check_output_dir_refuses_input_tree(tmp_path):
    from pipelines.bundles import check_output_dir

    inputs = tmp_path / "in"
    inputs.mkdir()
    assert check_output_dir(str(tmp_path / "out"), str(inputs)) == str(tmp_path / "out")
    for bad in (inputs, inputs / "preds"):
        with pytest.raises(ValueError, match="inside the input folder"):
            check_output_dir(str(bad), str(tmp_path / "other"), str(inputs))
