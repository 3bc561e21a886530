"""DDP with gloo on CPU: two processes train like one process on the same global batch, and a
two-process run resumes exactly (every process gets back its own RNG streams)."""
from __future__ import annotations

import dataclasses
import os
import socket

import torch
import torch.multiprocessing as mp

from deim.engine.fit import Trainer

from test_training import tiny_config


def ddp_config(output_dir):
    """No randomness that depends on the batch split: no augmentation stage, no denoising, no
    batch mixup; frozen BatchNorm (CPU has no SyncBatchNorm); MAL + boxes only (the DDF weighting
    depends on the per-process batch size, as in the official criterion)."""
    cfg = tiny_config(output_dir, epochs=1)
    schedule = cfg.schedule
    aug = dataclasses.replace(schedule.aug, policy_epochs=(0, 0, 0), mixup_epochs=(0, 0))
    losses = {"criterion.losses": ["mal", "boxes"],
              "criterion.weight_dict": {"loss_mal": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}}
    schedule = dataclasses.replace(schedule, aug=aug, total_batch_size=8, lr=1e-3, backbone_lr=1e-3, warmup_iter=1)
    return dataclasses.replace(cfg, schedule=schedule,
                               model={**cfg.model, "num_denoising": 0}, criterion=losses, freeze_bn=True,
                               data=dataclasses.replace(cfg.data, train_subset=16))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)


def _worker(rank: int, port: int, output_dir: str) -> None:
    _join(rank, port)
    trainer = Trainer(ddp_config(output_dir), progress=False)
    trainer.fit()
    torch.save({"weights": trainer.model.state_dict(), "history": trainer.history},
               os.path.join(output_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    run0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank0, rank1 = run0["weights"], torch.load(tmp_path / "rank1.pt", weights_only=False)["weights"]
    single = Trainer(ddp_config(tmp_path / "single"), progress=False)
    before = {k: v.clone() for k, v in single.model.state_dict().items()}
    single.fit()
    after = single.model.state_dict()
    assert single.iters_per_epoch == 2
    # the loss terms are normalised by the global number of boxes: the mean over the processes is
    # the single-process value (a per-process normaliser would differ)
    for term in ("loss", "loss_mal", "loss_bbox", "loss_giou"):
        assert abs(run0["history"][0][term] - single.history[0][term]) <= 1e-5 * abs(single.history[0][term]), term
    for key, value in after.items():
        assert torch.equal(rank0[key], rank1[key]), f"the processes disagree on {key}"
        # float sums over 2x4 and 1x8 images differ in rounding only
        torch.testing.assert_close(rank0[key], value, rtol=1e-4, atol=1e-6, msg=lambda m: f"{key}: {m}")
    moved = [k for k in after if after[k].is_floating_point() and not torch.equal(after[k], before[k])]
    assert len(moved) > 100  # training really changed the weights


def _resume_worker(rank: int, port: int, output_dir: str) -> None:
    """Two epochs straight vs one epoch, a new Trainer resumed from ``last.pth``, one more epoch.
    Denoising is on: its label/box noise draws from each process's own torch RNG (seeded
    ``seed + rank``), so resuming rank 1 with rank 0's RNG state would change its gradients."""
    from pathlib import Path

    _join(rank, port)
    out = Path(output_dir)
    straight = Trainer(tiny_config(out / "straight", epochs=2), progress=False)
    straight.fit()
    Trainer(tiny_config(out / "split", epochs=2), progress=False).fit(max_epochs=1)
    resumed = Trainer(tiny_config(out / "split", epochs=2, resume=str(out / "split" / "last.pth")), progress=False)
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    torch.save(different, out / f"different{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_process_run_resumes_exactly_with_each_process_own_rng(tmp_path):
    mp.spawn(_resume_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    state = torch.load(tmp_path / "split" / "last.pth", weights_only=False)
    per_rank = state["rng_per_rank"]
    assert len(per_rank) == 2 and not torch.equal(per_rank[0]["torch"], per_rank[1]["torch"])
    for rank in (0, 1):
        different = torch.load(tmp_path / f"different{rank}.pt")
        assert not different, f"rank {rank}: {len(different)} tensors differ after resume, e.g. {different[:3]}"
