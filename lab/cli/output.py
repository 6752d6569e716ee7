"""What every command prints and how it ends: the consoles, one progress line, one `error:`
line (or one JSON object) with the exit code of bad input or a dead component, Ctrl-C."""

from __future__ import annotations

import _thread
import contextlib
import functools
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape

from lab.data import paths, settings
from lab.data.errors import EXIT_INTERRUPTED, BadInput, ComponentError

STARTED = time.monotonic()
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def fail(exc: BadInput | ComponentError, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"error": str(exc), "exit_code": exc.exit_code}))
    err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
    if isinstance(exc, ComponentError):
        if exc.log_tail:
            err.print(f"--- last lines of {exc.component}.log ---\n{exc.log_tail}", markup=False)
        if run_dir := getattr(exc, "run_dir", None):
            err.print(f"evidence kept in {paths.relative(Path(run_dir))}", markup=False)
    sys.exit(exc.exit_code)


@contextlib.contextmanager
def guarded(as_json: bool, stopped: str, exit_on_stop: int = EXIT_INTERRUPTED) -> Iterator[None]:
    """Bad input and dead components end the command with their exit code and one line;
    Ctrl-C (and SIGTERM, SIGHUP) with `stopped` (every child was stopped by then)."""
    try:
        settings.current()  # a bad LAB_* variable is bad input: found before anything starts
        yield
    except (BadInput, ComponentError) as exc:
        fail(exc, as_json)
    except KeyboardInterrupt:
        err.print(stopped, markup=False)
        sys.exit(exit_on_stop)


def progress(message: str) -> None:
    err.print(f"[dim]lab {time.monotonic() - STARTED:5.1f}s:[/] {escape(message)}", markup=True)


def terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def install_stop_handlers() -> None:
    """SIGTERM and SIGHUP stop a run the way Ctrl-C does, and a Ctrl-C is never lost.

    Python raises KeyboardInterrupt wherever the main thread is when the signal lands. Where
    that is a weakref callback or a `__del__` (an import's module-lock callback, seen once in
    35 interrupted `lab verify` runs on a busy machine), Python prints "Exception ignored" and
    goes on: the run ran to its end and exited 0, every process left running meanwhile."""
    signal.signal(signal.SIGTERM, terminate_as_interrupt)
    signal.signal(signal.SIGHUP, terminate_as_interrupt)
    hook = sys.unraisablehook
    if getattr(hook, "func", None) is not _interrupt_again:  # once: main() may run again in-process
        sys.unraisablehook = functools.partial(_interrupt_again, hook)


def _interrupt_again(previous: Callable[[Any], object], unraisable: Any) -> None:
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        previous(unraisable)
        return
    # As if the signal landed again a moment later, out of the callback. Not from here: the
    # interrupt would be raised in this hook, and ignored again. A new thread runs only once
    # this thread lets go of the GIL, which it does in the code that goes on after the
    # callback (another callback that swallows it comes back here).
    _thread.start_new_thread(_thread.interrupt_main, ())
