"""`lab probe URL`: is there a cache between this machine and URL, and which of the lab's fixes
gets through it? Run by the user behind the network in question, against the app's probe
endpoint (cache_probe). Exit codes: 0 no cache on the path; 1 a cache froze at least one
strategy; 2 bad input; 3 the endpoint could not be reached; 130 interrupted."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from lab.cli.output import guarded, out, progress
from lab.data.errors import BadInput

if TYPE_CHECKING:
    from lab.judging.probe_result import ProbeResult

DEFAULT_POLLS = 9
DEFAULT_INTERVAL = 0.25  # the lab's (and the sample page's) poll interval


@click.command("probe")
@click.argument("url")
@click.option(
    "--proxy",
    metavar="URL",
    help="The forward proxy to go through (http://HOST:PORT, or http://USER:PASSWORD@HOST:PORT). "
    "Default: HTTP_PROXY / HTTPS_PROXY / ALL_PROXY and NO_PROXY from the environment.",
)
@click.option(
    "--polls",
    type=click.IntRange(2, 100),
    default=DEFAULT_POLLS,
    show_default=True,
    help="Requests per strategy (retries included).",
)
@click.option(
    "--interval",
    type=click.FloatRange(0, 10),
    default=DEFAULT_INTERVAL,
    show_default=True,
    metavar="S",
    help="Seconds between one strategy's polls.",
)
@click.option(
    "--cacert",
    metavar="FILE",
    help="https: the server's own CA (PEM). The certificate the path shows is verified with it "
    "alone: one it does not verify means something on the path intercepted TLS.",
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
def probe_command(
    url: str, proxy: str | None, polls: int, interval: float, cacert: str | None, as_json: bool
) -> None:
    """Find a cache on the path to URL, and which of the lab's fixes gets through it.

    URL is an app's probe endpoint (http://HOST:PORT/_cache-probe, see cache_probe), or any
    page: then only a two-request check, which can tell much less. Each strategy polls a fresh
    probe id the way its page would; the counter in the answers shows which polls reached the
    app. Exit codes: 0 no cache froze anything, 1 a cache froze at least one strategy, 2 bad
    input (URL, --proxy, a proxy variable), 3 the endpoint could not be reached (the proxy or
    the server: the error says which), 130 interrupted.
    """
    stop = threading.Event()
    with guarded(as_json, "interrupted"):
        try:
            result = run_probe(url, proxy, polls, interval, stop, as_json, cacert)
        finally:
            stop.set()  # the polling threads end at their next wait
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        print_result(result)
    sys.exit(result.exit_code)


def run_probe(
    url: str,
    proxy: str | None,
    polls: int,
    interval: float,
    stop: threading.Event,
    quiet: bool,
    cacert: str | None = None,
) -> ProbeResult:
    # Imported here, not at the top: every `lab` command loads this module.
    from lab.clients import probe as probe_client
    from lab.clients.probe_route import resolve
    from lab.judging.probe_result import judge_plain, judge_probe

    started = time.monotonic()
    route = replace(resolve(url, proxy), cacert=cacert)
    say = (lambda _m: None) if quiet else progress
    say(route.describe())
    look = probe_client.first_look(route)
    if look.index is None:
        say("not a probe endpoint: comparing two requests of the URL instead")
        second, body = probe_client.second_look(look)
        return judge_plain(look, second, body, time.monotonic() - started)
    chosen, unknown = probe_client.probed_strategies(look.index)
    if not chosen:
        raise BadInput(
            f"{route.url}: the probe endpoint lists no strategy this lab can poll "
            f"({', '.join(unknown) or 'none'}): a newer cache_probe than this lab?"
        )
    say(f"probing {len(chosen)} strategies, {polls} polls each, {interval:g} s apart")
    runs = probe_client.poll_all(look, chosen, polls, interval, stop)
    return judge_probe(
        look,
        runs,
        polls=polls,
        interval=interval,
        seconds=time.monotonic() - started,
        skipped=unknown,
    )


def print_result(result: ProbeResult) -> None:
    from lab.judging.probe_result import PLAIN_LIMITS
    from lab.reports.probe_report import (
        TABLE_COLUMNS,
        VERDICT_STYLE,
        match_line,
        report_block,
        verdict_row,
    )

    out.print(f"[bold]lab probe[/] {escape(result.url)}", markup=True)
    if result.proxy:
        proxy = f"{result.proxy} (from {result.proxy_source})"
    else:
        proxy = f"none ({result.proxy_source})"
    out.print(f"proxy used: {proxy}", markup=False)
    if result.tls is not None:
        for line in result.tls.lines():
            out.print(f"tls: {line}", markup=False)
    if result.plain is not None:
        out.print(f"limits: {PLAIN_LIMITS}", markup=False)
    else:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in TABLE_COLUMNS:
            table.add_column(column, no_wrap=column != "notes")
        for verdict in result.verdicts.values():
            row = [escape(cell) for cell in verdict_row(verdict)]
            row[1] = f"[{VERDICT_STYLE[verdict.verdict]}]{row[1]}[/]"
            table.add_row(*row)
        out.print(table)
        if result.skipped:
            out.print(f"not probed (unknown here): {', '.join(result.skipped)}", markup=False)
    if result.signs.any:
        out.print("[bold]signs on the path[/]:", markup=True)
        for line in result.signs.lines():
            out.print(f"  {line}", markup=False)
    if result.plain is None:
        out.print(match_line(result), markup=False)
    click.echo("")
    for line in report_block(result):
        click.echo(line)
    click.echo("")
    click.echo(f"probe: {result.summary} ({result.seconds:.1f} s)")
