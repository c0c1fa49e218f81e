"""The detection pieces for MONAI's engines (pipelines.engines.detection): collation, prepare-batch, the weighted loss,
a SupervisedTrainer / SupervisedEvaluator run with the RetinaNet detector, fine-tuning weights, the box panel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from torch.utils.data import DataLoader

from networks.nets.retinanet import build_detector, retinanet
from pipelines.engines.detection import (
    DetectionEvalStep,
    DetectionLoss,
    DetectionPrepareBatch,
    detection_batch_to_device,
    detection_collate,
    detection_loss_terms,
    load_init_weights,
)
from pipelines.handlers.tensorboard import DetectionTensorBoardHandler

TINY = {"depth": 10, "fpn_channels": 8, "block_inplanes": (8, 16, 16, 16)}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _items(n: int = 4, size: int = 64) -> list[dict]:
    """Bright squares on dark noise, one box each, the last image a negative."""
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        image = 0.1 * torch.rand(3, size, size, generator=g)
        boxes, labels = torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
        if i < n - 1:
            r, c = 8 + 8 * i, 12 + 6 * i
            image[:, r : r + 20, c : c + 24] += 0.8
            boxes, labels = torch.tensor([[r, c, r + 20, c + 24]], dtype=torch.float32), torch.tensor([0])
        items.append({"image": image, "box": boxes, "label": labels, "case_id": f"case{i}", "patient_id": f"p{i}"})
    return items


def test_collate_stacks_images_and_lists_the_rest():
    items = _items(3)
    items[1]["box"] = torch.tensor([[1.0, 2.0, 5.0, 6.0], [10.0, 10.0, 20.0, 30.0]])
    items[1]["label"] = torch.tensor([0, 0])
    batch = detection_collate(items)
    assert batch["image"].shape == (3, 3, 64, 64) and type(batch["image"]) is torch.Tensor
    assert [tuple(b.shape) for b in batch["box"]] == [(1, 4), (2, 4), (0, 4)]
    assert batch["case_id"] == ["case0", "case1", "case2"] and batch["patient_id"] == ["p0", "p1", "p2"]
    with pytest.raises(ValueError, match="one size"):
        detection_collate([items[0], {**items[1], "image": torch.zeros(3, 32, 64)}])
    with pytest.raises(ValueError, match="empty"):
        detection_collate([])


def test_prepare_batch_and_device_checks():
    batch = detection_collate(_items(2))
    batch["box"][0] = batch["box"][0].tolist()  # lists (e.g. from a datalist) become tensors
    images, targets, args, kwargs = DetectionPrepareBatch()(batch, "cpu")
    assert images.shape == (2, 3, 64, 64) and args == (targets,) and kwargs == {}
    assert targets[0]["box"].dtype == torch.float32 and targets[0]["label"].dtype == torch.long
    assert targets[1]["box"].shape == (0, 4) and targets[1]["label"].shape == (0,)
    assert detection_batch_to_device({k: v for k, v in batch.items() if k != "case_id"}, "cpu")["case_id"] == ["0", "1"]
    batch["label"][0] = torch.tensor([0, 0])
    with pytest.raises(ValueError, match="'case0' has 1 boxes but 2 labels"):
        detection_batch_to_device(batch, "cpu")
    with pytest.raises(KeyError, match="lacks \\['box'\\]"):
        detection_batch_to_device({"image": batch["image"], "label": batch["label"]}, "cpu")


def test_loss_is_the_weighted_sum_of_the_terms():
    terms = {"classification": torch.tensor(2.0), "box_regression": torch.tensor(3.0)}
    assert float(DetectionLoss()(terms)) == 5.0
    assert float(DetectionLoss(cls_weight=1.0, box_weight=0.5)(terms)) == 3.5
    assert detection_loss_terms({"loss": torch.tensor(3.5), "pred": terms}) == {
        "loss": 3.5, "loss_classification": 2.0, "loss_box_regression": 3.0}
    with pytest.raises(KeyError, match="train mode"):
        DetectionLoss()([{"box": torch.zeros(0, 4)}][0])
    with pytest.raises(ValueError, match="weights"):
        DetectionLoss(0.0, 0.0)


def _engines(items, epochs: int = 1):
    torch.manual_seed(0)
    network = retinanet(**TINY)
    detector = build_detector(network, anchor_sizes=(8, 16, 32, 64), score_thresh=0.0, detections_per_img=5)
    loader = DataLoader(items, batch_size=2, shuffle=False, collate_fn=detection_collate)
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=detector,
                                    iteration_update=DetectionEvalStep(), decollate=False)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=epochs, train_data_loader=loader, network=detector,
        optimizer=torch.optim.Adam(network.parameters(), 1e-3), loss_function=DetectionLoss(box_weight=2.0),
        prepare_batch=DetectionPrepareBatch(), decollate=False,
    )
    return network, detector, trainer, evaluator


def test_trainer_and_evaluator_run_the_detector():
    items = _items(4)
    network, detector, trainer, evaluator = _engines(items)
    before = network.regression_head.bbox_reg.weight.detach().clone()
    trainer.run()
    out = trainer.state.output
    terms = detection_loss_terms(out)
    assert terms["loss"] == pytest.approx(terms["loss_classification"] + 2.0 * terms["loss_box_regression"], rel=1e-5)
    assert not torch.equal(before, network.regression_head.bbox_reg.weight)
    evaluator.run()
    out = evaluator.state.output  # the last batch: case2 (a lesion) and case3 (a negative)
    assert set(out) == {"image", "pred_box", "pred_score", "pred_label", "box", "label", "case_id"}
    assert out["case_id"] == ["case2", "case3"] and out["image"].shape == (2, 3, 64, 64)
    assert [len(b) for b in out["box"]] == [1, 0]
    torch.testing.assert_close(out["box"][0], items[2]["box"])
    for boxes, scores, labels in zip(out["pred_box"], out["pred_score"], out["pred_label"]):
        assert boxes.shape == (len(scores), 4) and labels.shape == scores.shape and 0 < len(scores) <= 5
        assert bool(((scores >= 0) & (scores <= 1)).all()) and bool((scores[:-1] >= scores[1:]).all())
        assert bool((boxes[:, 2:] >= boxes[:, :2]).all()) and bool((boxes >= 0).all()) and bool((boxes <= 64).all())
    assert not detector.training


def test_evaluator_output_feeds_the_detection_metrics_handler():
    from pipelines.metrics.detection import DetectionMetricsHandler

    items = _items(4)
    _, _, _, evaluator = _engines(items)
    DetectionMetricsHandler(key="ap50").attach(evaluator, "val_ap50")
    evaluator.run()
    metrics = evaluator.state.metrics
    assert 0.0 <= metrics["val_ap50"] <= 1.0 and "val_ap50_selection_score" in metrics
    assert evaluator.state.metric_details["val_ap50"]["case_ids"] == ["case0", "case1", "case2", "case3"]


def test_load_init_weights_from_a_run_folder_or_file(tmp_path):
    torch.manual_seed(0)
    trained = retinanet(**TINY)
    (tmp_path / "run" / "models").mkdir(parents=True)
    torch.save(trained.state_dict(), tmp_path / "run" / "models" / "model.pt")
    torch.save({"model": trained.state_dict(), "optimizer": {}}, tmp_path / "checkpoint_epoch=3.pt")
    for source in (tmp_path / "run", tmp_path / "checkpoint_epoch=3.pt"):
        torch.manual_seed(1)
        fresh = retinanet(**TINY)
        assert load_init_weights(fresh, str(source)) is not None
        for key, value in trained.state_dict().items():
            torch.testing.assert_close(fresh.state_dict()[key], value)
    assert load_init_weights(fresh, None) is None and load_init_weights(fresh, "null") is None
    with pytest.raises(FileNotFoundError, match="models/model.pt"):
        load_init_weights(fresh, str(tmp_path))
    with pytest.raises(RuntimeError, match="same network_def"):
        load_init_weights(retinanet(**{**TINY, "fpn_channels": 16}), str(tmp_path / "run"))


def test_box_panel_draws_truth_and_confident_predictions(tmp_path):
    image = torch.zeros(1, 1, 32, 40)
    output = {
        "image": image,
        "box": [torch.tensor([[4.0, 5.0, 10.0, 20.0]])],
        "pred_box": [torch.tensor([[12.0, 2.0, 30.0, 38.0], [0.0, 0.0, 3.0, 3.0]])],
        "pred_score": [torch.tensor([0.9, 0.2])],
    }
    handler = DetectionTensorBoardHandler(log_dir=str(tmp_path), num_images=2, score_threshold=0.45)
    picture = handler.make_picture(output)
    assert picture.shape == (3, 32, 80)
    truth, pred = picture[:, :, :40], picture[:, :, 40:]
    green, red = np.array([0.2, 0.8, 0.2], np.float32), np.array([0.9, 0.2, 0.2], np.float32)
    # the truth box [4, 5, 10, 20): outline rows 4 and 9, columns 5 and 19
    on = np.zeros((32, 40), bool)
    on[4, 5:20] = on[9, 5:20] = on[4:10, 5] = on[4:10, 19] = True
    np.testing.assert_allclose(truth[:, on], np.repeat(green[:, None], on.sum(), 1))
    assert (truth[:, ~on] == 0).all()
    np.testing.assert_allclose(pred[:, 12, 2:38], np.repeat(red[:, None], 36, 1))
    assert (pred[:, :3, :3] == 0).all()  # the 0.2-score box is not drawn
