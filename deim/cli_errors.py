"""What the ``deim`` command prints and returns when a command fails: one line and an exit code.

=========  ===============================================================================
exit code  meaning
=========  ===============================================================================
2          bad input: arguments, data, annotations, checkpoints, settings (``ValueError``,
           ``FileNotFoundError``); also raised inside DataLoader workers
3          input/output failure: a file that cannot be read or written, a full disk, a
           read-only output folder (``OSError``, torch's serialisation ``RuntimeError``)
4          training stopped: too many non-finite losses in a row
130        interrupted (Ctrl-C); ``deim train`` names the epoch ``last.pth`` holds and prints
           the command that resumes it
=========  ===============================================================================

Anything else is a bug and keeps its traceback; ``deim --debug`` (or ``--debug`` after the
command) shows the traceback of every error.
"""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_IO = 3
EXIT_TRAINING = 4
EXIT_INTERRUPTED = 130

_WORKER = re.compile(r"Caught \w+ in DataLoader worker process \d+")
_IO_RUNTIME = ("inline_container", "PytorchStreamWriter", "PytorchStreamReader", "file write failed")


class Interrupted(Exception):
    """Ctrl-C during a command, with the message to print (e.g. how to resume)."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line: an error raised in a DataLoader worker is unwrapped to
    its original message; further lines of a long message are counted, not printed."""
    text = str(exc).strip()
    if _WORKER.search(text):  # "Caught X in DataLoader worker ... Original Traceback ... X: message"
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = re.sub(r"^[\w.]+(Error|Exception|Warning)?: ", "", last.strip())
    if not text:
        return type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    extra = f" (+{len(lines) - 1} more lines: --debug shows them)" if len(lines) > 1 else ""
    return (lines[0].rstrip(":") if extra else lines[0]) + extra


def classify(exc: BaseException) -> int | None:
    """The exit code for ``exc``, or ``None`` when it is not an expected failure (a bug)."""
    from deim.engine.train_loop import NonFiniteLossError

    if isinstance(exc, (KeyboardInterrupt, Interrupted)):
        return EXIT_INTERRUPTED
    if isinstance(exc, (ValueError, FileNotFoundError)):
        return EXIT_BAD_INPUT
    if isinstance(exc, OSError):
        return EXIT_IO
    if isinstance(exc, NonFiniteLossError):
        return EXIT_TRAINING
    if isinstance(exc, RuntimeError) and any(marker in str(exc) for marker in _IO_RUNTIME):
        return EXIT_IO
    return None


def report(command: str, exc: BaseException) -> int | None:
    """Print the one line for ``exc`` on stderr and return its exit code (``None``: not handled)."""
    code = classify(exc)
    if code is None:
        return None
    if code == EXIT_INTERRUPTED:
        message = str(exc) if isinstance(exc, Interrupted) else "stopped by Ctrl-C"
        print(f"deim {command}: interrupted: {message}", file=sys.stderr)
    else:
        print(f"deim {command}: error: {one_line(exc)}", file=sys.stderr)
    return code


def _checkpoint_epoch(path: Path) -> int | None:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["epoch"])
    except Exception:  # missing or unreadable: no usable checkpoint
        return None


def _without_resume(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            out.append(arg)
    return out


def _program() -> list[str]:
    """How this process was started: ``<python> -m deim`` or the ``deim`` script."""
    if Path(sys.argv[0]).name == "__main__.py" or not sys.argv[0]:
        return [sys.executable, "-m", "deim"]
    return [Path(sys.argv[0]).name]


def resume_hint(output_dir: str | Path, argv: list[str] | None) -> str:
    """What an interrupted ``deim train`` says: which epoch ``last.pth`` holds and the exact
    command that continues from it."""
    last = Path(output_dir) / "last.pth"
    epoch = _checkpoint_epoch(last)
    if epoch is None:
        return "no epoch was finished, so nothing was saved; run the same command again to start over"
    args = _without_resume(list(sys.argv[1:] if argv is None else argv))
    command = shlex.join([*_program(), *args, "--resume", str(last)])
    return (f"{last} holds epoch {epoch} (complete; nothing partial was saved); continue with: {command}")
