"""`lab agent URL`: serve matrix cells sent through the Redis at URL (lab/runs/agent.py)."""

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
@runs_dir_option
def agent_command(
    url: str,
    only_scenarios: str | None,
    only_fixes: str | None,
    concurrency: int,
    client: str,
    broker: str | None,
    redeliver_after: float,
    runs_dir: Path | None,
) -> None:
    """Run matrix cells that `lab matrix --dispatch REDIS_URL` sends, until Ctrl-C or SIGTERM.

    The agent starts the stacks of every cell it has (its scenarios x fixes), keeps them warm
    and runs only those cells; any other message is rejected with a one-line reason.
    """
    from lab.runs import agent
    from lab.runs.lifecycle import RunResources, new_run_dir

    with guarded(False, "stopped: every process of the agent was stopped", exit_on_stop=0):
        check_dispatch_url(url, "REDIS_URL")
        options = RunOptions(False, runs_dir, None, "forward", None, client, broker, None)
        say = functools.partial(err.print, markup=False)
        selection = check_for_matrix(only_scenarios, only_fixes, None, options, say)
        if not selection.scenarios:
            raise BadInput("no scenario left for this agent")
        _log_to_stderr()
        run_dir = new_run_dir(runs_dir or paths.runs_dir(), "agent")
        worker = agent.Agent(
            selection.scenarios,
            selection.fixes,
            run_dir,
            client=client,
            broker=broker,
            concurrency=concurrency,
        )
        with RunResources(run_dir) as resources:
            worker.warm(resources, progress)
            agent.serve(worker, url, redeliver_after, progress)
    sys.exit(0)


def dispatch_options(f: Command) -> Command:
    """`lab matrix`'s options for sending its cells to agents."""
    for option in reversed(DISPATCH_OPTIONS):
        f = option(f)
    return f


DISPATCH_OPTIONS = [
    click.option(
        "--dispatch",
        "dispatch_url",
        metavar="REDIS_URL",
        default=None,
        help="Send the cells to the `lab agent`s serving this Redis instead of running them here.",
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
