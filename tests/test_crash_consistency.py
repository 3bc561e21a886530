"""Issue 14, findings 1, 7 and 9: real training processes killed with SIGKILL at each checkpoint
write, a disk that fills up mid-run, and Ctrl-C. Nothing here is faked inside the process: the
child kills itself (``DEIM_TEST_KILL_AT``, a test hook in ``atomic_save``), runs under a file
size limit, or receives SIGINT from the test."""
from __future__ import annotations

import resource
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from cli_process import REPO, TINY, assert_one_line, child_env, deim

WRITES = [("last.pth", "written"), ("last.pth", "renamed"), ("best.pth", "written"), ("best.pth", "renamed")]


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("name, moment", WRITES, ids=[f"{n}-{m}" for n, m in WRITES])
def test_1_sigkill_at_each_checkpoint_write_leaves_a_pair_that_a_restart_makes_consistent(tmp_path, name, moment):
    out = tmp_path / "run"
    train = ["train", *TINY, "--epochs", "1", "--output-dir", out]
    killed = deim(*train, env={"DEIM_TEST_KILL_AT": f"{name}:{moment}"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]

    # what the user does next: resume from last.pth, or start again when there is none
    again = deim(*train, "--resume", out / "last.pth") if (out / "last.pth").exists() else deim(*train)
    assert again.returncode == 0, again.stderr[-3000:]

    assert not list(out.glob(".*.tmp")), "a temporary checkpoint file was left behind"
    last, best = _load(out / "last.pth"), _load(out / "best.pth")
    assert best["epoch"] == last["best"]["epoch"] == last["epoch"] == 0
    different = [k for k in last["ema"]["module"] if not torch.equal(last["ema"]["module"][k], best["ema"]["module"][k])]
    assert not different, f"{len(different)} tensors of best.pth differ from last.pth"


def _limit_file_size() -> None:  # runs in the child: writes beyond 8 MiB fail (EFBIG) as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 20, 8 << 20))


def test_7_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path):
    from deim.data.fashion import fashion_splits

    fashion_splits("smoke")  # generated here, not under the limit
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pth").write_bytes(b"the previous checkpoint")
    result = deim("train", *TINY, "--epochs", "1", "--output-dir", out, preexec_fn=_limit_file_size)
    assert_one_line(result, 3, f"cannot write checkpoint {out / 'last.pth'}", "the previous last.pth is unchanged")
    assert (out / "last.pth").read_bytes() == b"the previous checkpoint"
    assert not list(out.glob(".*.tmp"))


def test_9_ctrl_c_mid_run_says_what_last_pth_holds_and_how_to_resume(tmp_path):
    out = tmp_path / "run"
    argv = ["train", *TINY, "--epochs", "3", "--output-dir", str(out)]
    child = subprocess.Popen([sys.executable, "-m", "deim", *argv], cwd=REPO, env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "last.pth").exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=300)
    result = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    held = _load(out / "last.pth")["epoch"]
    line = assert_one_line(result, 130, "interrupted", f"holds epoch {held}", "--resume")
    assert not list(out.glob(".*.tmp"))

    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command[-2:] == ["--resume", str(out / "last.pth")]
    resumed = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"continuing at epoch {held + 1}" in resumed.stdout
    assert _load(out / "last.pth")["epoch"] == 2
