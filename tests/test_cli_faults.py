"""Issue 14, "nothing lost, nothing silent": the faults a demanding user hit, each run through the
command line in a subprocess. Every one is refused in one line with a distinct exit code (2: bad
input, 3: input/output) before any work is lost, or handled correctly (findings 2-6, 8, 10-13;
the crash and signal findings 1, 7 and 9 are in ``test_crash_consistency.py``)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image

from cli_process import TINY, TINY_MODEL, assert_one_line, custom_args, deim, small_coco


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of the tiny model; ``schedule.lr=4e-4`` and ``model.decoder.num_layers=2`` come
    from ``--set`` (finding 13: before the fix the first crashed inside AdamW, the second was refused)."""
    out = tmp_path_factory.mktemp("trained")
    result = deim("train", *TINY, "--epochs", "1", "--set", "schedule.lr=4e-4", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture()
def images(tmp_path):
    """A folder with two smoke images."""
    from deim.data.fashion import fashion_splits

    folder = tmp_path / "photos"
    folder.mkdir()
    source = sorted(fashion_splits("smoke")["val"][0].iterdir())
    for path in source[:2]:
        shutil.copy(path, folder / path.name)
    return folder


# ----------------------------------------------------------------- 13: typed overrides, one grammar
def test_13_set_values_take_the_field_type_and_model_keys_the_builder_grammar(trained):
    config = (trained / "config.yaml").read_text()
    assert "  lr: 0.0004\n" in config  # a float, not the string '4e-4'
    assert "decoder.num_layers: 2" in config
    state = torch.load(trained / "last.pth", map_location="cpu", weights_only=False)
    layers = {k.split(".")[3] for k in state["model"] if k.startswith("decoder.decoder.layers.")}
    assert layers == {"0", "1"}


def test_13_a_value_that_does_not_fit_its_field_is_one_line(tmp_path):
    result = deim("train", *TINY, "--epochs", "1", "--set", "schedule.lr=fast", "--output-dir", tmp_path / "run")
    assert_one_line(result, 2, "schedule.lr", "expected a number")
    result = deim("train", *TINY, "--epochs", "1", "--set", "model.decoder.num_layers=two",
                  "--output-dir", tmp_path / "run")
    assert_one_line(result, 2, "decoder.num_layers", "expected an integer")


def test_13_library_and_command_line_overrides_agree():
    from deim.engine.config import TrainConfig, apply_overrides
    from deim.presets.resolve import resolve_model

    cfg = apply_overrides(TrainConfig.from_preset("deim_dfine_n"),
                          ["schedule.lr=4e-4", "model.decoder.num_layers=2", "criterion.gamma=1.5",
                           "data.val_subset=8", "schedule.aug.policy_epochs=[0, 1, 2]"])
    assert cfg.schedule.lr == 4e-4 and isinstance(cfg.schedule.lr, float)
    assert cfg.model == {"decoder.num_layers": 2} and cfg.criterion == {"criterion.gamma": 1.5}
    assert cfg.schedule.aug.policy_epochs == (0, 1, 2) and cfg.data.val_subset == 8
    assert resolve_model("deim_dfine_n", **{"decoder.num_layers": "2", "criterion.alpha": "5e-1"}).decoder.num_layers == 2
    assert resolve_model("deim_dfine_n", **{"criterion.alpha": "5e-1"}).criterion.alpha == 0.5
    with pytest.raises(ValueError, match="expected an integer"):
        resolve_model("deim_dfine_n", **{"num_queries": 2.5})


# ----------------------------------------------------------------- 12: numeric flags in range
@pytest.mark.parametrize("argv, flag", [
    (["predict", "x.png", "--checkpoint", "x.pth", "--threshold", "5"], "--threshold"),
    (["predict", "x.png", "--checkpoint", "x.pth", "--image-size", "0"], "--image-size"),
    (["export", "--checkpoint", "x.pth", "--image-size", "100"], "--image-size"),
    (["train", "--preset", "deim_dfine_n", "--data", "fashion", "--workers", "-1"], "--workers"),
    (["train", "--preset", "deim_dfine_n", "--data", "fashion", "--epochs", "0"], "--epochs"),
])
def test_12_numeric_flags_out_of_range_are_refused(argv, flag):
    assert_one_line(deim(*argv), 2, flag)


# ----------------------------------------------------------------- 2 and 10: predict loses nothing
def test_2_predict_refuses_to_write_into_the_input_folder(trained, images):
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    result = deim("predict", images, "--checkpoint", trained / "last.pth", "--output-dir", images)
    assert_one_line(result, 2, "input")
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before


def test_2_inputs_with_the_same_stem_get_distinct_outputs(trained, images, tmp_path):
    first = sorted(images.iterdir())[0]
    Image.open(first).convert("RGB").save(images / "img0.jpg")
    first.rename(images / "img0.png")
    out = tmp_path / "out"
    result = deim("predict", images, "--checkpoint", trained / "last.pth", "--output-dir", out, "--threshold", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    written = sorted(p.name for p in out.glob("*.png"))
    assert len(written) == 3 and {"img0.png", "img0.jpg.png"} <= set(written)
    named = {r["file_name"] for r in json.loads((out / "predictions.json").read_text())}
    assert {"img0.png", "img0.jpg"} <= named


def test_10_predict_skips_files_that_are_not_images_with_a_count(trained, images, tmp_path):
    (images / "fake.jpg").write_text("not a picture")
    notes = tmp_path / "notes.csv"
    notes.write_text("a,b\n1,2\n")
    out = tmp_path / "out"
    result = deim("predict", images, notes, "--checkpoint", trained / "last.pth", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "skipped 2 file(s)" in result.stderr and "fake.jpg" in result.stderr and "notes.csv" in result.stderr
    assert len(list(out.glob("*.png"))) == 2
    only_bad = deim("predict", notes, "--checkpoint", trained / "last.pth", "--output-dir", out)
    assert_one_line(only_bad, 2, "no readable images")


# ----------------------------------------------------------------- 3: eval says what it uses
def test_3_eval_on_other_data_keeps_the_checkpoint_image_size(trained):
    from deim.data.fashion import fashion_splits

    val_images, val_json = fashion_splits("smoke")["val"]
    result = deim("eval", "--checkpoint", trained / "last.pth", "--data", "custom", "--val-json", val_json,
                  "--val-images", val_images, "--set", "data.val_subset=8", "--workers", "0", "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training size 96 px" in result.stdout and " at 96 px " in result.stdout


def test_3_eval_with_another_preset_is_refused(trained):
    result = deim("eval", "--checkpoint", trained / "last.pth", "--preset", "deim_dfine_s", "--no-progress")
    assert_one_line(result, 2, "trained as deim_dfine_n", "deim_dfine_s")


# ----------------------------------------------------------------- 4 and 8: resume and presets
def test_4_resume_with_other_model_settings_is_refused(trained, tmp_path):
    result = deim("train", *TINY, "--epochs", "2", "--resume", trained / "last.pth", "--set", "model.num_queries=20",
                  "--output-dir", tmp_path / "run")
    assert_one_line(result, 2, "num_queries: 12 -> 20", "--finetune")


def test_8_resume_as_another_preset_is_one_line_and_keeps_config_yaml(trained, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("the user's config\n")
    argv = ["--preset", "deim_dfine_s", *TINY[2:]]
    result = deim("train", *argv, "--epochs", "2", "--resume", trained / "last.pth", "--output-dir", out)
    assert_one_line(result, 2, "preset: deim_dfine_n -> deim_dfine_s")
    assert (out / "config.yaml").read_text() == "the user's config\n"


def test_8_predict_with_a_preset_that_does_not_fit_is_one_line(trained, images, tmp_path):
    ours = deim("predict", images, "--checkpoint", trained / "last.pth", "--preset", "deim_dfine_s",
                "--output-dir", tmp_path / "a")
    assert_one_line(ours, 2, "trained as deim_dfine_n")
    state = torch.load(trained / "last.pth", map_location="cpu", weights_only=False)
    torch.save({"ema": {"module": state["ema"]["module"]}}, tmp_path / "official.pth")  # no config inside
    official = deim("predict", images, "--checkpoint", tmp_path / "official.pth", "--preset", "deim_dfine_s",
                    "--output-dir", tmp_path / "b")
    assert_one_line(official, 2, "does not fit preset deim_dfine_s", "shape")


# ----------------------------------------------------------------- 5, 6, 11: checked before training
def test_5_an_image_missing_on_disk_is_refused_before_training(tmp_path):
    data = small_coco(tmp_path / "data")
    missing = sorted(data["train_images"].iterdir())[3]
    missing.unlink()
    result = deim("train", *TINY_MODEL, *custom_args(data), "--epochs", "1", "--output-dir", tmp_path / "run")
    assert_one_line(result, 2, "1 of the 8 images", missing.name)
    assert "epochs x" not in result.stdout and not (tmp_path / "run" / "last.pth").exists()


def test_5_a_file_that_is_no_image_is_refused_before_training(tmp_path):
    data = small_coco(tmp_path / "data")
    broken = sorted(data["val_images"].iterdir())[1]
    broken.write_text("not a picture")
    result = deim("train", *TINY_MODEL, *custom_args(data), "--epochs", "1", "--output-dir", tmp_path / "run")
    assert_one_line(result, 2, str(broken), "not a readable image")
    assert "epochs x" not in result.stdout


def test_5_a_truncated_image_read_in_a_worker_is_one_line_naming_it(tmp_path):
    data = small_coco(tmp_path / "data")
    truncated = sorted(data["train_images"].iterdir())[2]
    content = truncated.read_bytes()
    truncated.write_bytes(content[:len(content) // 2])  # the header decodes, the pixels do not
    argv = [*TINY_MODEL, *custom_args(data), "--workers", "2", "--epochs", "1", "--output-dir", tmp_path / "run"]
    line = assert_one_line(deim("train", *argv), 3, "cannot read image", str(truncated))
    assert "DataLoader worker" not in line


def test_6_an_output_folder_below_a_file_is_refused_at_once(tmp_path):
    (tmp_path / "file").write_text("x")
    result = deim("train", *TINY, "--epochs", "1", "--output-dir", tmp_path / "file" / "run")
    assert_one_line(result, 3, "is a file")
    assert "epochs x" not in result.stdout


def _lock(folder, locked: bool) -> bool:
    """Make ``folder`` unwritable (as root: the immutable attribute); False when not possible."""
    import os
    import subprocess

    if os.geteuid() != 0:
        folder.chmod(0o500 if locked else 0o700)
        return True
    flag = "+i" if locked else "-i"
    return subprocess.run(["chattr", flag, str(folder)], capture_output=True).returncode == 0


def test_6_a_read_only_output_folder_is_refused_at_once(tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    if not _lock(out, True):
        pytest.skip("cannot make a folder read-only here")
    try:
        result = deim("train", *TINY, "--epochs", "1", "--output-dir", out)
    finally:
        _lock(out, False)
    assert_one_line(result, 3, f"cannot write into the output folder {out}")
    assert "epochs x" not in result.stdout


def test_11_an_empty_validation_set_is_refused_before_training(tmp_path):
    data = small_coco(tmp_path / "data", n_val=0)
    result = deim("train", *TINY_MODEL, *custom_args(data), "--epochs", "1", "--output-dir", tmp_path / "run")
    assert_one_line(result, 2, "validation set is empty", "val.json")
    assert "epochs x" not in result.stdout and not (tmp_path / "run" / "last.pth").exists()


def test_debug_shows_the_traceback_that_the_one_line_replaces():
    plain = deim("eval", "--checkpoint", "missing.pth")
    assert_one_line(plain, 2, "checkpoint not found")
    for argv in (["--debug", "eval"], ["eval", "--debug"]):
        debug = deim(*argv, "--checkpoint", "missing.pth")
        assert debug.returncode == 1 and "Traceback" in debug.stderr and "checkpoint not found" in debug.stderr
