"""Command line: ``python -m deim <command>`` (also installed as ``deim``).

Commands:
    train       train a preset (COCO, any COCO-format folder, or the built-in data)
    eval        COCO metrics of a checkpoint
    predict     detections on images: annotated PNGs + predictions.json
    export      ONNX export of a checkpoint
    reproduce   run the paper notebooks with papermill at a scale (smoke | reduced | full)
    schedule    print a preset's training schedule (epochs, augmentation stages, LR) as YAML
"""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from deim.cli_errors import report
from deim.cli_types import int_at_least
from deim.commands import add_commands


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from deim.report.runner import reproduce

    runs = reproduce(args.scale, only=args.only, notebooks_dir=args.notebooks_dir, figures_dir=args.figures_dir,
                     output_dir=args.output_dir, jobs=args.jobs if args.jobs is not None else
                     (1 if args.scale == "full" else 2))
    failed = [r.name for r in runs if not r.ok]
    total = sum(r.seconds for r in runs)
    print(f"{len(runs) - len(failed)} of {len(runs)} notebooks ran in {total:.0f}s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    import yaml

    from deim.presets.catalog import get_preset
    from deim.presets.sections import plain

    print(yaml.safe_dump({args.preset: plain(get_preset(args.preset).schedule)}, sort_keys=False), end="")
    return 0


class _OneLineErrors(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (no usage block) and exit code 2.

    Subcommand parsers inherit the class, so ``deim train --epochs x`` is one line too.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(prog="deim", description="DEIM: DETR with Improved Matching — reference "
                                     "companion. Run `deim <command> --help` for the options of a command.")
    sub = parser.add_subparsers(dest="command", metavar="command")
    add_commands(sub)

    rep = sub.add_parser("reproduce", help="regenerate the paper's figures and tables with papermill",
                         description="Execute the notebooks in notebooks/ with papermill and write figures "
                                     "(PNG), tables (CSV + Markdown) and provenance into figures/<scale>/.")
    rep.add_argument("--scale", choices=["smoke", "reduced", "full"], default="reduced",
                     help="smoke: minutes (CI); reduced: about 2 hours on 2 CPU cores from an empty cache; full: the paper's "
                          "COCO settings on a GPU node (default: reduced)")
    rep.add_argument("--only", nargs="+", metavar="NAME", help="run only these notebooks (e.g. 01 or 02_schedules)")
    rep.add_argument("--notebooks-dir", default="notebooks", help="folder with the NN_topic.py notebooks")
    rep.add_argument("--figures-dir", default=None, help="where to write outputs (default: figures/<scale>)")
    rep.add_argument("--output-dir", default=None,
                     help="where to keep executed notebooks (default: outputs/notebooks/<scale>)")
    rep.add_argument("--jobs", type=int_at_least(1), default=None,
                     help="train the experiment runs this many at a time, one thread each, before the notebooks "
                          "(default: 2 at smoke/reduced, 1 = inside the notebooks at full)")
    rep.set_defaults(func=_cmd_reproduce)

    sch = sub.add_parser("schedule", help="print a preset's training schedule as YAML")
    sch.add_argument("preset", help="e.g. deim_dfine_s, deim_rtdetrv2_r50, dfine_l")
    sch.set_defaults(func=_cmd_schedule)
    _add_debug_flag(parser, sub)
    return parser


def _add_debug_flag(parser: argparse.ArgumentParser, sub: argparse._SubParsersAction) -> None:
    """``--debug`` before or after the command: show the traceback of an error."""
    text = "show the full traceback of an error instead of one line"
    parser.add_argument("--debug", action="store_true", help=text)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=text)


def main(argv: list[str] | None = None) -> int:
    """Run one command; an expected failure is one line on stderr and an exit code
    (:mod:`deim.cli_errors`), unless ``--debug`` asks for the traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args.argv = argv  # for the resume command printed after Ctrl-C
    try:
        return args.func(args)
    except (Exception, KeyboardInterrupt) as exc:
        code = None if args.debug else report(args.command, exc)
        if code is None:
            raise
        return code


if __name__ == "__main__":
    sys.exit(main())
