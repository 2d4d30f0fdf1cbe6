"""How a failed command reads on the command line: one ``error:`` line and an exit status.

Every ``transinr`` command runs inside :func:`report`, which turns an exception into

* status 2 and its message for bad input — a config value, a file that is missing,
  unreadable or of the wrong kind, a checkpoint for another model, a busy run folder;
* status 1 for a run that failed on its own (a diverged loss, a full disk) and for
  anything unexpected, which also says how to see the traceback;
* status 130 for Ctrl-C and 143 for SIGTERM, with how to resume.

``--debug`` (or ``TRANSINR_DEBUG=1``) prints the traceback as well.
"""

from __future__ import annotations

import errno
import signal
import sys
import traceback
from contextlib import contextmanager

DEBUG_VARIABLE = "TRANSINR_DEBUG"
RESUME_HINT = "run the same command again to resume from the last checkpoint"


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (a scheduler's time limit, ``kill``): unwinds like Ctrl-C."""


@contextmanager
def sigterm_unwinds():
    """Within the block, SIGTERM raises :class:`Terminated`, so checkpoints and temporary
    files are cleaned up as for Ctrl-C; outside it the previous handler is back."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame):
    raise Terminated()


def disk_full(error: BaseException) -> OSError | None:
    """The "no space left on device" error behind ``error``, if there is one.

    ``torch.save`` on a full disk raises a RuntimeError about its zip writer; the
    OSError that caused it is in the exception chain.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return error
        if "No space left on device" in str(error):
            return OSError(errno.ENOSPC, "No space left on device")
        error = error.__cause__ or error.__context__
    return None


def bad_input_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the user's input (config, files, arguments) is at fault."""
    from .checkpoint import CheckpointError
    from .data.errors import TooManyCorruptImagesError
    from .run_lock import RunFolderBusyError

    # ConfigError, CorruptImageError and json's JSONDecodeError are ValueErrors;
    # DatasetNotFoundError is an OSError; MissingDependencyError an ImportError.
    return (ValueError, OSError, ImportError, CheckpointError, TooManyCorruptImagesError, RunFolderBusyError)


def describe(error: BaseException) -> tuple[int, str]:
    """(exit status, the text after ``error:``) for an exception that ended a command."""
    if isinstance(error, ModuleNotFoundError) and error.name:
        # Checked first: the lookups below import torch, which may be the missing module.
        return 2, (f"the Python package {error.name!r} is not installed in {sys.executable}; "
                   f"install the kit with its dependencies (README: `pip install -e .`)")
    from .train import NonFiniteLossError

    if isinstance(error, Terminated):
        return 143, f"terminated (SIGTERM); {RESUME_HINT}"
    if isinstance(error, KeyboardInterrupt):
        return 130, f"interrupted; {RESUME_HINT}"
    full = disk_full(error)
    if full is not None:
        where = f" while writing {full.filename}" if full.filename else ""
        return 1, (f"no space left on device{where}: free some space and {RESUME_HINT} "
                   f"(checkpoints are replaced only once a new one is complete)")
    if isinstance(error, NonFiniteLossError):
        return 1, str(error)
    if isinstance(error, bad_input_types()):
        return 2, _message(error)
    return 1, (f"unexpected {type(error).__name__}: {_message(error)} — please report it; "
               f"rerun with --debug (or {DEBUG_VARIABLE}=1) to see the traceback")


def _message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None and str(error).startswith("[Errno"):
        return f"{error.filename}: {error.strerror}"  # "[Errno 2] … 'x'" → "x: No such file …"
    return str(error).strip() or type(error).__name__


@contextmanager
def report(debug: bool = False):
    """Run a command; on failure print one ``error:`` line (and the traceback when
    ``debug``) and exit with the status of :func:`describe`. SystemExit (argparse's
    usage errors, status 2) passes through."""
    try:
        with sigterm_unwinds():
            yield
    except SystemExit:
        raise
    except BaseException as error:  # noqa: BLE001 - every failure is reported, then exits
        if debug:
            traceback.print_exc()
        status, message = describe(error)
        if status in (130, 143):
            print(file=sys.stderr)  # end the progress bar's line
        print(f"error: {message}", file=sys.stderr)
        sys.exit(status)
