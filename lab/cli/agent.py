"""`lab agent URL`: serve matrix cells, profile verifications and audits of its own flow files
sent through the Redis at URL (lab/runs/agent.py)."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from lab.cli.options import (
    Command,
    RunOptions,
    check_for_matrix,
    runs_dir_option,
    selection_options,
)
from lab.cli.output import err, guarded, progress
from lab.data import paths
from lab.data.errors import BadInput
from lab.data.kinds import BROKERS, CLIENTS
from lab.runs.agent_protocol import DEFAULT_REDELIVER_AFTER, check_dispatch_url

SERVED = ("cells", "verify", "audit")  # --serve's words; "cells" is the message kind "cell"


def _log_to_stderr() -> None:
    """The agent's own lines (each cell taken, judged or rejected) on stderr, whatever Celery
    does with the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s lab agent: %(message)s"))
    logger = logging.getLogger("lab.agent")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


@click.command("agent")
@click.argument("url", metavar="REDIS_URL")
@selection_options
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="Cells this agent runs at once (and worker threads of its stacks).",
)
@click.option(
    "--client", type=click.Choice(CLIENTS), default="python", show_default=True, help="Its client."
)
@click.option(
    "--broker",
    type=click.Choice(BROKERS),
    default=None,
    help="Every scenario on this broker (default: each scenario's own).",
)
@click.option(
    "--redeliver-after",
    type=click.FloatRange(5, 86400),
    default=DEFAULT_REDELIVER_AFTER,
    show_default=True,
    help="Seconds before a cell taken by an agent that was lost goes to another agent; longer "
    "than the longest cell (a cell still running then runs twice, and counts once).",
)
@click.option(
    "--serve",
    metavar="KINDS",
    default=None,
    help="What it runs: matrix cells (cells; their stacks start first), profile verifications "
    "(verify) and audits of its --flow files (audit). [default: "
    + ",".join(SERVED)
    + "; audits only with --flow]",
)
@click.option(
    "--flow",
    "flow_files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A flow file it serves audits of (repeat); a message names it by file name and sha256.",
)
@runs_dir_option
def agent_command(
    url: str,
    only_scenarios: str | None,
    only_fixes: str | None,
    concurrency: int,
    client: str,
    broker: str | None,
    redeliver_after: float,
    serve: str | None,
    flow_files: tuple[Path, ...],
    runs_dir: Path | None,
) -> None:
    """Run what `lab matrix|verify|audit --dispatch REDIS_URL` sends, until Ctrl-C or SIGTERM.

    Matrix cells: the agent starts the stacks of every cell it has (its scenarios x fixes),
    keeps them warm and runs only those cells. Verifications: a profile whose real product is
    installed here. Audits: of the --flow files only. Any other message is rejected with a
    one-line reason.
    """
    from lab.reports.audit_page import publish_audit
    from lab.runs import agent
    from lab.runs.dispatch_audit import load_flow, serve_audit
    from lab.runs.lifecycle import RunResources, new_run_dir
    from lab.verify.dispatch import serve_verify

    with guarded(False, "stopped: every process of the agent was stopped", exit_on_stop=0):
        check_dispatch_url(url, "REDIS_URL")
        serves = served(serve, flow_files, only_scenarios or only_fixes)
        flows = [load_flow(path) for path in flow_files]
        options = RunOptions(False, runs_dir, None, "forward", None, client, broker, None)
        say = functools.partial(err.print, markup=False)
        scenarios, fixes = [], []
        if "cell" in serves:
            selection = check_for_matrix(only_scenarios, only_fixes, None, options, say)
            if not selection.scenarios:
                raise BadInput("no scenario left for this agent")
            scenarios, fixes = selection.scenarios, selection.fixes
        _log_to_stderr()
        run_dir = new_run_dir(runs_dir or paths.runs_dir(), "agent")
        worker = agent.Agent(
            scenarios,
            fixes,
            run_dir,
            client=client,
            broker=broker,
            concurrency=concurrency,
            serves=serves,
            jobs={
                "verify": serve_verify,
                "audit": functools.partial(serve_audit, have=flows, publish=publish_audit),
            },
        )
        for found in flows:
            progress(f"serving audits of {found.name} (sha256 {found.sha256[:12]}...)")
        with RunResources(run_dir) as resources:
            if "cell" in serves:
                worker.warm(resources, progress)
            agent.serve(worker, url, redeliver_after, progress)
    sys.exit(0)


def served(given: str | None, flow_files: tuple[Path, ...], selected: str | None) -> frozenset[str]:
    """The message kinds --serve names, every kind when not given (BadInput for an unknown
    one, or audits asked for without a flow, or --scenarios/--fixes without cells)."""
    if given is None:
        return frozenset("cell" if word == "cells" else word for word in SERVED)
    words = [word.strip() for word in given.split(",") if word.strip()]
    for word in words:
        if word not in SERVED:
            raise BadInput(f"--serve {given!r}: {word!r} is not one of {', '.join(SERVED)}")
    if not words:
        raise BadInput(f"--serve {given!r}: name one of {', '.join(SERVED)}")
    if flow_files and "audit" not in words:
        raise BadInput("--flow goes with --serve audit")
    if "audit" in words and not flow_files:
        raise BadInput("--serve audit needs a flow file: --flow FILE.toml")
    if selected and "cells" not in words:
        raise BadInput("--scenarios and --fixes go with --serve cells")
    return frozenset("cell" if word == "cells" else word for word in words)


def dispatch_options(f: Command) -> Command:
    """`lab matrix|verify|audit`'s options for sending their work to agents."""
    for option in reversed(DISPATCH_OPTIONS):
        f = option(f)
    return f


DISPATCH_OPTIONS = [
    click.option(
        "--dispatch",
        "dispatch_url",
        metavar="REDIS_URL",
        default=None,
        help="Send the cells (verify, audit: a profile at a time) to the `lab agent`s serving this "
        "Redis instead of running them here.",
    ),
    click.option(
        "--evidence-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="With --dispatch: a folder every agent can write (else evidence comes back in "
        "the results).",
    ),
    click.option(
        "--cell-deadline",
        type=click.FloatRange(1, 86400),
        default=None,
        help="With --dispatch: seconds a cell may take from its sending (default: its own longest "
        "wait plus a redelivery).",
    ),
]


NOT_DISPATCHED = ("proxy_url", "proxy_mode", "app_port")  # checked away by check_for_dispatch


def check_for_dispatch(url: str, run: RunOptions, brokers: list[str]) -> None:
    """What --dispatch cannot go with, found before anything is sent."""
    check_dispatch_url(url)
    for given, option in (
        (run.proxy_url, "--proxy-url"),
        (run.app_port, "--app-port"),
        (run.broker_url, "--broker-url"),
        (len(brokers) > 1, "--brokers"),
    ):
        if given:
            raise BadInput(f"--dispatch and {option}: agents run the lab's own stacks only")
