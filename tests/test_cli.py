"""The command line end to end on the built-in data: train, resume, eval, predict, export, errors."""
from __future__ import annotations

import json

import pytest

from deim.cli import main

TINY = ["--preset", "deim_dfine_n", "--data", "fashion", "--fashion-scale", "smoke", "--image-size", "96",
        "--batch-size", "8", "--workers", "0", "--no-progress", "--set", "model.num_queries=12",
        "--set", "model.num_denoising=6", "--set", "schedule.warmup_iter=2", "--set", "data.train_subset=16",
        "--set", "data.val_subset=8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TINY, "--epochs", "1", "--output-dir", str(out)]) == 0
    return out


def test_train_writes_checkpoints_logs_and_config(trained, capsys):
    assert {"last.pth", "best.pth", "log.jsonl", "log.csv", "config.yaml"} <= {p.name for p in trained.iterdir()}
    assert "preset: deim_dfine_n" in (trained / "config.yaml").read_text()


def test_resume_continues_to_the_new_end(trained, tmp_path, capsys):
    assert main(["train", *TINY, "--epochs", "2", "--output-dir", str(trained),
                 "--resume", str(trained / "last.pth")]) == 0
    rows = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert "resumed" in capsys.readouterr().out


def test_eval_prints_the_twelve_coco_stats(trained, capsys):
    assert main(["eval", "--checkpoint", str(trained / "last.pth"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    for name in ("AP", "AP50", "AP75", "APs", "ARl"):
        assert f"{name:>6} " in out


def test_predict_writes_images_and_json(trained, tmp_path):
    from deim.data.fashion import fashion_splits

    images = fashion_splits("smoke")["val"][0]
    assert main(["predict", str(images), "--checkpoint", str(trained / "last.pth"),
                 "--output-dir", str(tmp_path), "--threshold", "0"]) == 0
    records = json.loads((tmp_path / "predictions.json").read_text())
    assert len(list(tmp_path.glob("*.png"))) == 32 and records
    assert {"file_name", "category_id", "category_name", "bbox", "score"} <= set(records[0])


def test_export_writes_onnx(trained, tmp_path):
    pytest.importorskip("onnx")
    assert main(["export", "--checkpoint", str(trained / "last.pth"), "--output", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["train", "--preset", "nope", "--data", "fashion"], "unknown model preset 'nope'; choose one of deim_dfine_n"),
    (["train", "--preset", "deim_dfine_n", "--data", "fashion", "--set", "preset=deim_dfine_s"],
     "choose the preset with --preset deim_dfine_s"),
    (["train", "--preset", "deim_dfine_n", "--data", "coco"], "needs data.root"),
    (["train", "--preset", "deim_dfine_n", "--data", "custom", "--train-json", "x.json"], "needs data.train_images"),
    (["train", "--preset", "deim_dfine_n", "--data", "fashion", "--set", "data.nope=1"], "unknown config key"),
    (["predict", "missing.png", "--checkpoint", "missing.pth"], "checkpoint not found: missing.pth"),
    (["eval", "--checkpoint", "missing.pth"], "checkpoint not found: missing.pth"),
    (["train", "--preset", "deim_dfine_n", "--data", "fashion", "--eval-every", "0"], "eval_every must be"),
    (["train", "--preset", "deim_dfine_n", "--data", "coco", "--data-root", "/no/coco"],
     "image folder not found: /no/coco/train2017"),
])
def test_wrong_arguments_give_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_any_coco_format_folder_trains_through_the_custom_path(tmp_path):
    from deim.data.fashion import fashion_splits

    splits = fashion_splits("smoke")
    (train_images, train_ann), (val_images, val_ann) = splits["train"], splits["val"]
    custom = TINY[:TINY.index("--data")] + ["--data", "custom"] + TINY[TINY.index("--image-size"):]
    assert main(["train", *custom, "--train-json", str(train_ann), "--train-images", str(train_images),
                 "--val-json", str(val_ann), "--val-images", str(val_images), "--epochs", "1",
                 "--output-dir", str(tmp_path)]) == 0
    assert (tmp_path / "last.pth").is_file()


def _printed_stats(out: str) -> dict[str, float]:
    stats = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0][:2] in ("AP", "AR"):
            stats[parts[0]] = float(parts[1])
    return stats


def test_eval_reproduces_the_runs_own_evaluation_of_the_ema_model(trained, capsys):
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(trained / "last.pth"), "--no-progress"]) == 0
    printed = _printed_stats(capsys.readouterr().out)
    logged = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()][-1]
    assert len(printed) == 12
    assert printed == {k: round(100 * logged[k], 2) for k in printed}


def test_eval_of_an_official_layout_checkpoint_needs_only_the_validation_data(trained, tmp_path, capsys):
    import torch

    from deim.data.fashion import fashion_splits

    ours = torch.load(trained / "last.pth", weights_only=False)
    torch.save({"ema": {"module": ours["ema"]["module"]}}, tmp_path / "official.pth")  # no config, no label map
    val_images, val_ann = fashion_splits("smoke")["val"]
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "official.pth"), "--preset", "deim_dfine_n",
                 "--data", "custom", "--val-json", str(val_ann), "--val-images", str(val_images),
                 "--image-size", "96", "--set", "model.num_queries=12", "--set", "data.val_subset=8",
                 "--no-progress"]) == 0
    official = _printed_stats(capsys.readouterr().out)
    assert main(["eval", "--checkpoint", str(trained / "last.pth"), "--no-progress"]) == 0
    assert official == _printed_stats(capsys.readouterr().out)


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "fashion"], "the following arguments are required: --preset"),
    (["train", "--preset", "deim_dfine_n", "--data", "fashion", "--epochs", "x"], "invalid int value: 'x'"),
    (["nope"], "invalid choice: 'nope'"),
    (["train", "--preset", "deim_dfine_n", "--data", "fashion", "--image-size", "0"],
     "argument --image-size: 0 is not a positive multiple of 32"),
])
def test_argument_errors_are_one_line_with_exit_code_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "--help" in err[0]


def test_train_can_start_from_a_fashion_mnist_pretrained_backbone(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEIM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--pretrain-backbone", "2", "--output-dir", str(out)]) == 0
    config = (out / "config.yaml").read_text()
    assert "backbone_pretrain:" in config and "iterations: 2" in config
    cached = list((tmp_path / "cache" / "pretrained").glob("*.pth"))
    assert len(cached) == 1 and cached[0].with_suffix(".json").is_file()
