"""The one place where errors become a message on stderr and an exit code."""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
from collections.abc import Callable, Iterator

import click

from boxlite_cli.cli.printable import printable
from boxlite_cli.errors import BoxliteError, Detached, Interrupted, NoSuchBox, NoSuchVolume

EXIT_BOXLITE = 125
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def ending_on_signals(*signums: int) -> Iterator[None]:
    """Within: SIGTERM and SIGHUP (by default) end the command as Ctrl-C does, so its
    clean-up runs (a half-written copy is removed) and the exit code is 128 + N. A
    signal this process inherited as ignored (nohup) stays ignored."""
    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    previous = {}
    for signum in signums or (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            previous[signum] = signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


REPORT_MAX = 1000  # characters of an error line (a path can be tens of KiB long)


def shortened(text: str, most: int = REPORT_MAX) -> str:
    """`text`, its middle cut out when it is longer than `most`."""
    if len(text) <= most:
        return text
    keep = most // 2
    return f"{text[:keep]}...{text[-keep:]}"


def report(message: str, hint: str | None = None) -> None:
    """The error line (and its hint) on stderr; said nowhere when stderr cannot take
    it (`2>/dev/full`): the exit code still tells."""
    with contextlib.suppress(OSError, ValueError):
        click.echo(f"boxlite: {shortened(printable(message))}", err=True)
        if hint:
            click.echo(f"  hint: {printable(hint)}", err=True)


def exit_code_for(error: BaseException, debug: bool) -> int:
    """Print the one-line error (the traceback too with --debug) and return the exit code."""
    if isinstance(error, Detached):  # (not an error: said so, with no traceback)
        click.echo("read escape sequence", err=True)  # (docker's words)
        return 0
    if debug:
        import traceback  # only with --debug

        traceback.print_exception(error, file=sys.stderr)
    if isinstance(error, BoxliteError):
        report(error.message, error.hint)
        return error.exit_code
    if isinstance(error, click.UsageError):
        cmd = error.ctx.command_path if error.ctx else "boxlite"
        # (click's own layout, "Choose from:\n\tbash,...", made one line)
        text = " ".join(error.format_message().split())
        reason = None
        if isinstance(error, click.NoSuchOption):
            from boxlite_cli.cli.dockerflags import docker_flag_reason

            verb = cmd.removeprefix("boxlite").strip()
            reason = docker_flag_reason(verb, error.option_name)
            if reason is not None:
                text = f"{cmd} does not take docker's {error.option_name}: {reason}"
        if reason is None and isinstance(error, click.NoSuchOption) and error.possibilities:
            text = (f"{error.message} (did you mean "
                    f"{' or '.join(sorted(error.possibilities))}?)")
        report(text, f"see '{cmd} --help'")
        return EXIT_BOXLITE
    if isinstance(error, click.ClickException):
        report(error.format_message())
        return EXIT_BOXLITE
    if isinstance(error, KeyboardInterrupt):
        return 130
    if isinstance(error, Interrupted):
        return 128 + error.signum
    if isinstance(error, OSError) and error.strerror and _writing_stdout(error):
        report(f"cannot write to standard output: {error.strerror}")  # (not the disk's)
        return EXIT_BOXLITE
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        report(f"{error.strerror}{where}", _no_space_hint() if error.errno in NO_SPACE else None)
        return EXIT_BOXLITE
    report(f"internal error: {type(error).__name__}: {error}",
           None if debug else "run again with --debug for the details")
    return EXIT_BOXLITE


def _no_space_hint() -> str:
    """Where boxlite's own data is, for a full disk whose file the error did not name."""
    from boxlite_cli.state.paths import home_paths

    return (f"free some disk space and try again (boxlite keeps its data under "
            f"{home_paths().data}: `boxlite system df` shows what it takes, "
            "`boxlite system prune` frees what is unused)")


def _writing_stdout(error: OSError) -> bool:
    """The error came from writing to standard output (`> /dev/full`): the last frame
    it went through is click's echo to stdout."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None or error.filename is not None:
        return False
    frame = tb.tb_frame
    return (frame.f_code.co_name == "echo" and frame.f_globals.get("__name__") == "click.utils"
            and not frame.f_locals.get("err"))


MAX_PARALLEL = 16  # boxes stopped at once


def each_box(refs: tuple[str, ...], action: Callable[[str], object],
             missing_is_done: bool = False, parallel: bool = False) -> int:
    """Apply `action` to every box like docker does: echo each one that worked, report
    each failure on its own line and go on; the exit code is the last failure's.
    `missing_is_done` (`rm -f`, `volume rm -f`): a box or volume that does not exist is
    passed over without a word, as docker's (a script's `rm -f NAME` that makes sure it
    is gone).

    An `int` returned by `action` is a failure already reported, with that exit code.
    """
    code = 0
    for ref, outcome in _outcomes(refs, action, parallel):
        if isinstance(outcome, BoxliteError):
            if missing_is_done and isinstance(outcome, NoSuchBox | NoSuchVolume):
                continue
            if _debugging():  # (--debug: each failure's traceback, as a single one's)
                import traceback

                traceback.print_exception(outcome, file=sys.stderr)
            report(outcome.message, outcome.hint)
            code = outcome.exit_code
            continue
        if isinstance(outcome, int) and outcome:
            code = outcome
        else:
            click.echo(ref)
    return code


def _debugging() -> bool:
    """Whether this command runs with boxlite's --debug."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and getattr(ctx.find_root().obj, "debug", False))


def _outcomes(refs: tuple[str, ...], action: Callable[[str], object],
              parallel: bool) -> Iterator[tuple[str, object]]:
    """(ref, what `action` returned or the BoxliteError it raised), in the order of
    `refs`; `parallel`: the actions run at once, each said as soon as it and those
    before it are done (docker's stop of several boxes)."""
    def outcome(ref: str) -> object:
        try:
            return action(ref)
        except BoxliteError as e:
            return e

    if not parallel or len(refs) < 2:
        for ref in refs:
            yield ref, outcome(ref)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(refs), MAX_PARALLEL)) as pool:
        futures = [pool.submit(outcome, ref) for ref in refs]
        for ref, future in zip(refs, futures, strict=True):
            yield ref, future.result()
