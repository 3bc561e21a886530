"""The training run's screen output: one line per epoch, the end summary."""
from __future__ import annotations

from deim.engine.console import duration, epoch_line, summary

ROW = {"epoch": 1, "stage": "dense_o2o", "loss": 32.4321, "loss_mal": 0.0913, "loss_bbox": 0.2251,
       "loss_giou": 0.7642, "loss_fgl": 0.0607, "loss_mal_aux_0": 9.0, "AP": 0.0031, "AP50": 0.0123,
       "train_seconds": 16.2, "images_per_s": 3.94, "skipped_steps": 0}


def test_epoch_line_has_stage_main_losses_ap_time_and_speed():
    line = epoch_line(ROW, 6)
    assert line.startswith("epoch 2/6  Dense O2O")
    assert "loss 32.43 (mal 0.091 bbox 0.225 giou 0.764 fgl 0.061)" in line
    assert "AP 0.3 AP50 1.2" in line and "16 s" in line and "3.9 img/s" in line
    assert "aux" not in line and "\n" not in line


def test_epoch_line_without_evaluation_and_other_stages():
    row = {k: v for k, v in ROW.items() if k not in ("AP", "AP50")} | {"stage": "no_aug", "skipped_steps": 2}
    line = epoch_line(row, 12)
    assert line.startswith("epoch  2/12  no-aug") and "AP" not in line and "2 non-finite steps skipped" in line
    assert epoch_line({**ROW, "stage": "warmup"}, 6).split("  ")[1].strip() == "warm-up"


def test_summary_names_best_epoch_time_and_files(tmp_path):
    history = [{**ROW, "epoch": 0, "AP": 0.001, "AP50": 0.004}, ROW]
    text = summary(history, {"epoch": 1, "AP": 0.0031}, 151.0, tmp_path, tensorboard=True)
    assert "finished: 2 epochs in 2 min 31 s" in text and "best AP 0.3, AP50 1.2 at epoch 2" in text
    assert str(tmp_path / "best.pth") in text and str(tmp_path / "log.csv") in text
    assert f"tensorboard --logdir {tmp_path / 'tensorboard'}" in text
    zero = summary(history, {"epoch": 0, "AP": 0.0}, 3.0, tmp_path, tensorboard=False)
    assert "AP stayed 0" in zero and "tensorboard" not in zero


def test_duration():
    assert [duration(s) for s in (4.4, 75.2, 4000)] == ["4 s", "1 min 15 s", "1 h 6 min"]
