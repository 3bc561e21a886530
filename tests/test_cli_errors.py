"""The mapping from an exception to the one line and exit code of ``deim`` (``deim.cli_errors``)."""
from __future__ import annotations

import pytest

from deim.cli_errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_IO, EXIT_TRAINING, classify, one_line
from deim.data.annotations import AnnotationError
from deim.engine.run_folder import CheckpointWriteError
from deim.engine.train_loop import NonFiniteLossError

WORKER = ("Caught OSError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
          "  File \"x.py\", line 3, in load_image\n    raise OSError(...)\n"
          "OSError: cannot read image /data/a.jpg (image id 7): image file is truncated\n")


@pytest.mark.parametrize("exc, code", [
    (AnnotationError("bad box"), EXIT_BAD_INPUT),
    (FileNotFoundError("no such image"), EXIT_BAD_INPUT),
    (OSError(WORKER), EXIT_IO),
    (CheckpointWriteError("cannot write checkpoint"), EXIT_IO),
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"), EXIT_IO),
    (NonFiniteLossError("5 consecutive non-finite losses"), EXIT_TRAINING),
    (KeyboardInterrupt(), EXIT_INTERRUPTED),
    (RuntimeError("a bug"), None),
    (TypeError("a bug"), None),
])
def test_each_expected_failure_has_its_exit_code_and_a_bug_keeps_its_traceback(exc, code):
    assert classify(exc) == code


def test_an_error_from_a_dataloader_worker_is_unwrapped_to_its_own_line():
    assert one_line(OSError(WORKER)) == "cannot read image /data/a.jpg (image id 7): image file is truncated"


def test_a_long_message_is_cut_to_its_first_line_with_a_count():
    assert one_line(ValueError("shape mismatch for 2 tensor(s):\n  a: 1 vs 2\n  b: 3 vs 4")) == (
        "shape mismatch for 2 tensor(s) (+2 more lines: --debug shows them)")
