"""The ``train``, ``eval``, ``predict`` and ``export`` commands of ``python -m deim``.

Each command imports what it runs inside its function: ``deim --help`` and argument errors answer
without importing torch and torchvision (0.1 s instead of several seconds on a 2-core machine), and a
command pays only for its own parts.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from deim.cli_types import image_size, int_at_least, probability

TRAIN_EPILOG = """examples:
  deim train --preset deim_dfine_n --data fashion --fashion-scale smoke      (a few minutes on CPU)
  deim train --preset deim_dfine_s --data coco --data-root /data/coco --batch-size 32
  deim train --preset deim_dfine_s --data custom --train-json tr.json --train-images tr/ \\
             --val-json va.json --val-images va/ --epochs 50 --finetune deim_dfine_s_coco
  torchrun --nproc_per_node=4 -m deim train --preset deim_dfine_l --data coco --data-root /data/coco
  deim train ... --resume outputs/train/last.pth          (continues exactly where it stopped)

--epochs rescales the paper schedule's shape (warm-up, Dense O2O, standard, no-aug stages);
--batch-size applies the linear LR scaling rule (LR x new/paper batch size) and prints the result.
--set KEY=VALUE changes any config value, e.g. --set schedule.warmup_iter=200 --set model.num_queries=100."""


EVAL_EPILOG = """examples:
  deim eval --weights outputs/train/best.pth                    (our checkpoints know their data)
  deim eval --weights outputs/train/best.pth --data custom --val-json va.json --val-images va/
  deim eval --weights deim_dfine_s_coco --data coco --data-root /data/coco     (a released model, by name)
  deim eval --weights deim_dfine_hgnetv2_s_coco_120e.pth --preset deim_dfine_s --data coco --data-root /data/coco"""


WEIGHTS_HELP = ("a released model's name (deim_dfine_s_coco ...; downloaded once into ~/.cache/deim/weights), an "
                "http(s) or file:// URL, or a checkpoint file (ours know their preset and classes)")


def add_data_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", choices=["fashion", "coco", "custom"], required=required,
                   help="built-in Fashion-MNIST detection data, COCO 2017, or any COCO-format folder")
    g.add_argument("--data-root", help="--data coco: the folder with train2017/, val2017/, annotations/")
    g.add_argument("--fashion-scale", choices=["smoke", "reduced", "full"], default="reduced",
                   help="--data fashion: size of the built-in data (generated on first use)")
    g.add_argument("--train-json", help="--data custom: COCO-format annotations of the training images")
    g.add_argument("--train-images", help="--data custom: folder of the training images")
    g.add_argument("--val-json", help="--data custom: COCO-format annotations of the validation images")
    g.add_argument("--val-images", help="--data custom: folder of the validation images")
    g.add_argument("--image-size", type=image_size, default=None, help="square training/eval size (default 640; --data fashion: 160 at smoke scale, 320 otherwise)")
    g.add_argument("--workers", type=int_at_least(0), default=2, help="DataLoader workers per process")


def _config(args: argparse.Namespace):
    from deim.cli_defaults import cap_queries, fill_builtin_defaults
    from deim.engine.config import DataConfig, TrainConfig, apply_overrides
    from deim.engine.input_sizes import training_sizes
    from deim.presets.catalog import get_preset
    from deim.presets.resolve import resolve_preset

    filled = fill_builtin_defaults(args)
    if filled and getattr(args, "command", None) == "train":
        print(f"[deim] built-in data, {args.fashion_scale} scale: {' '.join(filled)} (give any to change)")
    preset = get_preset(args.preset)  # the one look-up of the preset name
    paper = preset.schedule
    cfg = TrainConfig.from_schedule(args.preset, paper, epochs=args.epochs, batch_size=args.batch_size)
    s = cfg.resolved_schedule()
    if args.batch_size is not None and args.batch_size != paper.total_batch_size:
        print(f"[deim] linear LR scaling: batch {paper.total_batch_size} -> {args.batch_size}: lr {paper.lr:g} -> "
              f"{s.lr:g}, backbone lr {paper.backbone_lr:g} -> {s.backbone_lr:g}")
    data = DataConfig(dataset=args.data, root=args.data_root, train_images=args.train_images,
                      train_ann=args.train_json, val_images=args.val_images, val_ann=args.val_json,
                      fashion_scale=args.fashion_scale, image_size=640 if args.image_size is None else args.image_size,
                      num_workers=args.workers)
    cfg.data, cfg.device, cfg.amp, cfg.seed = data, args.device, args.amp, args.seed
    cfg.output_dir, cfg.resume, cfg.finetune = args.output_dir, args.resume, args.finetune
    cfg.eval_every = args.eval_every
    cfg.backbone_weights = args.backbone_weights
    if args.pretrain_backbone:
        from deim.engine.backbone_pretrain import BackbonePretrain

        cfg.backbone_pretrain = BackbonePretrain(iterations=args.pretrain_backbone)
    cfg = apply_overrides(cfg, args.set or [])
    if cfg.preset != preset.name:
        raise ValueError(f"--set preset={cfg.preset} would keep {preset.name}'s schedule; choose the preset "
                         f"with --preset {cfg.preset}")
    if getattr(args, "command", None) == "train":
        sizes = training_sizes(cfg.resolved_schedule(), cfg.data.image_size)
        cfg.model, notice = cap_queries(resolve_preset(preset, **cfg.model).model, cfg.model, sizes)
        if notice:
            print(notice)
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from deim.cli_errors import Interrupted, resume_hint
    from deim.engine.console import summary
    from deim.engine.fit import Trainer
    from deim.engine.output_folder import prepare_output_folder

    cfg = _config(args)
    out = prepare_output_folder(cfg.output_dir, _image_folders(cfg))
    trainer = Trainer(cfg, progress=not args.no_progress)  # checks the data and a resumed checkpoint first
    (out / "config.yaml").write_text(cfg.to_yaml())
    s = trainer.schedule
    total = s.epochs * trainer.iters_per_epoch
    print(f"[deim] {cfg.preset}: {s.epochs} epochs x {trainer.iters_per_epoch} iterations, stages "
          f"{s.aug.policy_epochs}, warm-up {s.warmup_iter} of {total} iterations; writing to {out}")
    if s.warmup_iter > total // 4:
        print(f"[deim] note: the LR warm-up covers more than a quarter of training; consider "
              f"--set schedule.warmup_iter={max(1, total // 20)}")
    start = time.perf_counter()
    try:
        history = trainer.fit()
    except KeyboardInterrupt:
        raise Interrupted(resume_hint(out, getattr(args, "argv", None))) from None
    if trainer.info.is_main:
        print(summary(history, trainer.best, time.perf_counter() - start, out, (out / "tensorboard").is_dir()))
    return 0


def _image_folders(cfg) -> list[Path | None]:
    """The image folders a training run reads (the output folder must be none of them)."""
    from deim.engine.data_build import data_paths

    paths = data_paths(cfg.data)
    return [paths.train_images, paths.val_images]


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from deim.engine.config import TrainConfig, apply_overrides
    from deim.data.labels import LabelMap
    from deim.engine.backends import with_backend
    from deim.engine.data_build import build_eval_data
    from deim.engine.checkpointing import read_checkpoint
    from deim.engine.inference import check_preset, load_for_inference
    from deim.engine.train_loop import evaluate_coco
    from deim.weights import resolve_weights
    from deim.zoo import find_pretrained

    entry = find_pretrained(args.checkpoint)
    if entry is not None and not args.preset:
        args.preset = entry.preset
    state = read_checkpoint(resolve_weights(args.checkpoint))
    if "config" in state:  # ours: its data unless other data is given
        cfg = TrainConfig.from_dict(state["config"])
        check_preset(cfg.preset, args.preset)
        if args.data is not None:  # other data, at the checkpoint's own size unless --image-size
            cfg.data = dataclasses.replace(_config(_with_training_defaults(args, cfg.preset)).data,
                                           image_size=cfg.data.image_size)
        if args.image_size is None:
            print(f"[deim] the checkpoint's preset {cfg.preset} and training size {cfg.data.image_size} px "
                  f"(--image-size changes the size)")
    elif args.preset and args.data:
        cfg = _config(_with_training_defaults(args, args.preset))
    else:
        raise ValueError(f"{args.checkpoint} holds no training config: give --preset and the data (--data ...)")
    if args.image_size is not None:
        cfg.data.image_size = args.image_size
    cfg = apply_overrides(cfg, args.set or [])
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    saved = LabelMap.from_dict(state["label_map"]) if "label_map" in state else None
    val, loader = build_eval_data(cfg.data, saved, seed=cfg.seed)
    im = load_for_inference(state, preset=cfg.preset, image_size=cfg.data.image_size,
                            num_classes=val.label_map.num_classes, device=device,
                            model_overrides={**(entry.model if entry else {}), **cfg.model})
    im = with_backend(im, args.backend, device)
    print(f"[deim] {cfg.preset} at {im.image_size} px on {len(loader.dataset)} images of {val.ann_file}")
    stats = evaluate_coco(im.model, im.postprocessor, loader, val.ann_file, val.label_map, device,
                          progress=not args.no_progress)
    for name, value in stats.items():
        print(f"{name:>6} {100 * value:6.2f}")
    return 0


def _with_training_defaults(args: argparse.Namespace, preset: str) -> argparse.Namespace:
    """The ``eval`` arguments completed with neutral training values, so that :func:`_config`
    builds the data config exactly as ``train`` would."""
    return argparse.Namespace(**{**vars(args), "preset": preset, "epochs": None, "batch_size": None, "amp": False,
                                 "resume": None, "finetune": None, "eval_every": 1, "set": [], "pretrain_backbone": None,
                                 "backbone_weights": None,
                                 "output_dir": "outputs/train", "data": args.data or "fashion"})


def add_backend_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["eager", "onnxruntime"], default="eager",
                   help="who runs the model: eager PyTorch (default) or ONNX Runtime on the CPU (faster; exported on "
                        "first use and cached in ~/.cache/deim/onnx; needs pip install 'deim[export]')")


def cmd_predict(args: argparse.Namespace) -> int:
    from deim.engine.backends import with_backend
    from deim.engine.image_inputs import check_output_folder
    from deim.engine.inference import find_images, predict_images, write_predictions
    from deim.pretrained import load_pretrained

    im = load_pretrained(args.checkpoint, preset=args.preset, image_size=args.image_size, device=args.device)
    images = find_images(args.inputs)  # non-images skipped with a warning
    check_output_folder(args.output_dir, images)  # never over an input
    im = with_backend(im, args.backend, args.device)
    results = predict_images(im, images, device=args.device)
    out = write_predictions(results, im.label_map, args.output_dir, args.threshold)
    print(f"[deim] {len(results)} images -> {args.output_dir} (annotated PNGs) and {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ValueError("ONNX export needs onnx and onnxruntime: pip install 'deim[export]'") from None
    from deim.models.export import export_onnx
    from deim.pretrained import load_pretrained

    im = load_pretrained(args.checkpoint, preset=args.preset, image_size=args.image_size)
    path = export_onnx(im.model, im.postprocessor, args.output, image_size=im.image_size)
    print(f"[deim] wrote {path} (inputs: images [B, 3, {im.image_size}, {im.image_size}], orig_target_sizes [B, 2])")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("train", help="train a preset on COCO, a COCO-format folder or the built-in data",
                        description="Train a DEIM (or baseline) preset with its paper schedule.",
                        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--preset", required=True, help="deim_dfine_{n,s,m,l,x}, deim_rtdetrv2_{r18,...}, dfine_*, ...")
    add_data_arguments(tr)
    tr.add_argument("--epochs", type=int_at_least(1), help="rescale the paper schedule to this many epochs (default: the paper's; --data fashion: 6 at "
                    "smoke scale, 12 at reduced)")
    tr.add_argument("--batch-size", type=int_at_least(1), help="total batch size, linear LR scaling applied (default: the paper's; --data fashion: 16, "
                    "32 at full scale)")
    tr.add_argument("--resume", help="continue a run from its last.pth")
    tr.add_argument("--finetune", metavar="NAME|PATH|URL",
                    help="start from these weights (class heads re-initialised when the classes differ): "
                         + WEIGHTS_HELP)
    tr.add_argument("--backbone-weights", metavar="FILE",
                    help="start the backbone from this file, e.g. the official ImageNet PPHGNetV2_B4_stage1.pth or "
                         "ResNet-vd weights (the paper's initialisation; deim downloads nothing)")
    tr.add_argument("--pretrain-backbone", type=int_at_least(1), metavar="STEPS",
                    help="first pre-train the backbone to classify Fashion-MNIST items for STEPS steps (cached in "
                         "~/.cache/deim/pretrained; the reduced protocol's stand-in for ImageNet uses 300)")
    tr.add_argument("--output-dir", default="outputs/train",
                    help="where last.pth, best.pth, log.jsonl/csv and config.yaml go (default outputs/train)")
    tr.add_argument("--device", default="auto", help="auto, cpu or cuda")
    tr.add_argument("--amp", action="store_true", help="mixed precision on CUDA (bf16 where supported)")
    tr.add_argument("--seed", type=int_at_least(0), default=0, help="seeds Python, NumPy, torch, the sample order, every "
                    "augmentation draw and the DataLoader workers (default 0)")
    tr.add_argument("--eval-every", type=int, default=1, help="evaluate the EMA model every N epochs")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bars")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="COCO metrics of a checkpoint on a validation set",
                        description="Print the 12 COCO stats of a checkpoint's (EMA) model. Only the validation "
                                    "images are read.", epilog=EVAL_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--weights", "--checkpoint", dest="checkpoint", required=True, metavar="NAME|PATH|URL",
                    help=WEIGHTS_HELP)
    ev.add_argument("--preset", help="needed for other checkpoint files (ours and released names know it)")
    add_data_arguments(ev, required=False)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--seed", type=int_at_least(0), default=0, help="picks the images of --set data.val_subset=N")
    ev.add_argument("--set", action="append", metavar="KEY=VALUE")
    ev.add_argument("--no-progress", action="store_true")
    add_backend_argument(ev)
    ev.set_defaults(func=cmd_eval)

    pr = sub.add_parser("predict", help="detect objects in images; writes annotated PNGs and predictions.json",
                        description="Detect objects in images with a checkpoint's (EMA) model; writes one annotated "
                                    "PNG per image and predictions.json (COCO results with the original category "
                                    "ids and names).", epilog="example:\n  deim predict photos/ --weights "
                                    "outputs/train/best.pth --output-dir outputs/predict --threshold 0.5",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pr.add_argument("inputs", nargs="+", help="image files or folders")
    pr.add_argument("--weights", "--checkpoint", dest="checkpoint", required=True, metavar="NAME|PATH|URL",
                    help=WEIGHTS_HELP)
    pr.add_argument("--preset", help="needed for other checkpoint files (ours and released names know it)")
    pr.add_argument("--image-size", type=image_size)
    pr.add_argument("--threshold", type=probability, default=0.4, help="minimum score drawn and written")
    pr.add_argument("--output-dir", default="outputs/predict")
    pr.add_argument("--device", default="cpu")
    add_backend_argument(pr)
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export", help="export a checkpoint to ONNX (opset 17, dynamic batch)",
                        description="Export a checkpoint's (EMA) model with its post-processor to ONNX (needs "
                                    "pip install 'deim[export]').", epilog="example:\n  deim export --weights "
                                    "outputs/train/best.pth --output model.onnx",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("--weights", "--checkpoint", dest="checkpoint", required=True, metavar="NAME|PATH|URL",
                    help=WEIGHTS_HELP)
    ex.add_argument("--preset", help="needed for other checkpoint files (ours and released names know it)")
    ex.add_argument("--image-size", type=image_size)
    ex.add_argument("--output", default="model.onnx")
    ex.set_defaults(func=cmd_export)
