"""`lab`: reproduce a scenario and judge it against ground truth.

Exit codes: 0 observed == expected; 1 observed differs; 2 bad input (unknown scenario, fix or
profile, invalid scenario or profile file); 3 a component could not start or died; 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.cli.agent import NOT_DISPATCHED, agent_command, check_for_dispatch, dispatch_options
from lab.cli.audit import audit_command
from lab.cli.options import (
    BROKER_LIST,
    FIX,
    SCENARIO,
    RunOptions,
    broker_options,
    check_app_port_alone,
    check_client,
    check_for_matrix,
    check_for_run,
    check_host,
    check_proxy_options,
    run_options,
    runs_dir_option,
    selection_options,
)
from lab.cli.output import err, guarded, install_stop_handlers, out, progress
from lab.cli.probe import probe_command
from lab.cli.verify import verify_command
from lab.data import paths, scenarios
from lab.data.errors import (
    EXIT_MATCHED,
    EXIT_MISMATCH,
    BadInput,
)
from lab.data.kinds import MATRIX_CONCURRENCY
from lab.judging.tls_path import certificate_line

# The run, judging and report modules (httpx, jinja2, part of mitmproxy) are imported by the
# command that needs them: every `lab` process, `lab list` and `lab --help` included, would
# otherwise pay for them, and the test suite starts `lab` many times.
if TYPE_CHECKING:
    from lab.judging.evidence import Verdict
    from lab.runs import broker_comparison, matrix


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Reproduce the bugs misbehaving HTTP proxies cause in apps that poll for background work."""
    install_stop_handlers()  # SIGTERM and SIGHUP as Ctrl-C; a Ctrl-C is never swallowed


@main.command("list")
def list_scenarios() -> None:
    """List the scenarios with one line each."""
    with guarded(False, "interrupted"):
        loaded = scenarios.load_all()
        if not loaded:
            raise BadInput(f"no scenario files in {paths.relative(paths.scenarios_dir())}")
    width = max(len(sc.name) for sc in loaded) + 2
    for sc in loaded:
        click.echo(f"{sc.name:<{width}}{sc.summary}  [proxy: {sc.proxy}]")


@main.command()
@click.argument("scenario", type=SCENARIO)
@click.option(
    "--fix",
    type=FIX,
    default="none",
    show_default=True,
    help="Fix strategy: none, nonce, no-store.",
)
@run_options
def repro(scenario: str, fix: str, run: RunOptions) -> None:
    """Run SCENARIO (a name from `lab list`, or a .toml file) with one fix, and judge it."""
    from lab.reports import publish
    from lab.runs import repro as repro_run

    with guarded(run.as_json, "interrupted: every process of the run was stopped"):
        loaded, chosen_broker = check_for_run(
            scenario, fix, run.broker, run.broker_url, run.proxy_url
        )
        check_client(loaded, run.client)
        check_proxy_options(run, [loaded])
        check_app_port_alone(run)
        verdict = repro_run.run_until_tested(
            loaded,
            fix,
            run.runs_root,
            progress,
            proxy_url=run.proxy_url,
            proxy_mode=run.proxy_mode,
            app_port=run.app_port or 0,
            client=run.client,
            broker=chosen_broker,
        )
        publish.publish_run(verdict, loaded)

    if run.as_json:
        click.echo(json.dumps(verdict.to_json()))
    else:
        _print_evidence(verdict)
        if verdict.inconclusive:
            click.echo(f"not judged after {verdict.attempts} runs: {verdict.untested}")
        click.echo(verdict.sentence)
    sys.exit(EXIT_MATCHED if verdict.matched else EXIT_MISMATCH)


def _print_evidence(v: Verdict) -> None:
    table = Table(box=None, show_header=False, pad_edge=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    task = v.task
    finished = task.get("finished_at")
    table.add_row(
        "worker",
        f"task {task.get('final_state') or 'not finished'}"
        + (f" at {finished:.2f} s" if finished is not None else ""),
    )
    table.add_row("result backend", str(v.backend_state))
    table.add_row("origin", f"{v.polls['reached_origin']} status polls reached it")
    if v.proxy != "none":
        table.add_row("proxy", f"{v.proxy}: answered {v.polls['from_cache']} polls from its cache")
    table.add_row("client", f"{v.polls['total']} polls, UI {v.observed}")
    if v.stopped_at:
        table.add_row("status stopped at", v.stopped_at)
    if stale := v.first_stale_answer:
        headers = ", ".join(
            f"{k}={stale[k]}" for k in ("age", "date", "via", "cache_control") if stale.get(k)
        )
        over_tls = f"; over TLS, {stale['tls_certificate']}" if stale.get("tls_certificate") else ""
        table.add_row(
            "first stale answer",
            f"poll {stale['seq']} at {stale['at']} s: {headers or 'no cache headers'}{over_tls}",
        )
    if tls := v.tls:
        table.add_row("tls", f"{tls['mode']}: terminated at {tls['terminated_at']}")
        table.add_row("", f"client accepted {certificate_line(tls)}")
        table.add_row("", f"client trusted {tls['client_trusted']}")
    table.add_row("evidence", paths.relative(Path(v.run_dir)))
    out.print(table)
    if v.lesson:
        out.print(f"lesson: {v.lesson.strip()}", markup=False)


@main.command("matrix")
@selection_options
@click.option(
    "--repeat",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="Run the matrix N times and report any cell whose outcome changed.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="Cells running at once (and worker threads). [default: "
    + ", ".join(f"{n} with the {client} client" for client, n in MATRIX_CONCURRENCY.items())
    + "]",
)
@click.option(
    "--brokers",
    "broker_list",
    type=BROKER_LIST,
    metavar="A,B",
    help="Run the whole matrix once on each of these brokers (sqlite, redis, rabbitmq) and "
    "show which cells had the same outcome on all of them.",
)
@click.option(
    "--screenshots",
    type=click.Choice(["mismatches", "all"]),
    default="mismatches",
    show_default=True,
    help="With --client browser: a screenshot of each cell that did not match, or of all.",
)
@dispatch_options
@run_options
def matrix_command(
    only_scenarios: str | None,
    only_fixes: str | None,
    repeat: int,
    concurrency: int | None,
    broker_list: str | None,
    screenshots: str,
    dispatch_url: str | None,
    evidence_dir: Path | None,
    cell_deadline: float | None,
    run: RunOptions,
) -> None:
    """Run every scenario against every fix that applies, and print the table.

    Each scenario runs on its own default broker unless --broker or --brokers says otherwise;
    scenarios that cannot run on a broker are left out of its matrix, and said so.
    """
    from lab.reports import publish
    from lab.runs import broker_comparison, matrix

    with guarded(run.as_json, "interrupted: every process of the matrix was stopped"):
        say = functools.partial(err.print, markup=False)
        selection = check_for_matrix(only_scenarios, only_fixes, broker_list, run, say)
        if dispatch_url:
            check_for_dispatch(dispatch_url, run, selection.brokers)
        elif evidence_dir or cell_deadline:
            raise BadInput("--evidence-dir and --cell-deadline go with --dispatch")
        check_proxy_options(run, selection.scenarios)
        check_app_port_alone(run)
        brokers = selection.brokers
        common = {
            "scenarios": selection.scenarios,
            "fixes": selection.fixes,
            "repeat": repeat,
            "concurrency": concurrency or MATRIX_CONCURRENCY[run.client],
            "proxy_url": run.proxy_url,
            "proxy_mode": run.proxy_mode,
            "app_port": run.app_port or 0,
            "client": run.client,
            "screenshots": screenshots,
        }
        if dispatch_url:
            from lab.runs import dispatch

            result = dispatch.run_dispatched_matrix(
                runs_root=run.runs_root,
                progress=progress,
                dispatch_url=dispatch_url,
                evidence_dir=evidence_dir,
                deadline=cell_deadline,
                broker=brokers[0] if brokers else None,
                **{k: v for k, v in common.items() if k not in NOT_DISPATCHED},
            )
            publish.publish_matrix(result, selection.scenarios)
        elif len(brokers) > 1:
            comparison = broker_comparison.run_broker_comparison(
                brokers, run.runs_root, progress, broker_url=run.broker_url, **common
            )
            publish.publish_comparison(comparison, selection.scenarios)
        else:
            result = matrix.run_matrix(
                runs_root=run.runs_root,
                progress=progress,
                broker=brokers[0] if brokers else None,
                broker_url=run.broker_url,
                **common,
            )
            publish.publish_matrix(result, selection.scenarios)
    if len(brokers) > 1:
        if run.as_json:
            click.echo(json.dumps(comparison.to_json()))
        else:
            _print_comparison(comparison)
        sys.exit(EXIT_MATCHED if comparison.ok else EXIT_MISMATCH)
    if run.as_json:
        click.echo(matrix.to_json_text(result))
    else:
        _print_matrix(result)
    sys.exit(EXIT_MATCHED if result.ok else EXIT_MISMATCH)


def _print_comparison(comparison: broker_comparison.BrokerComparison) -> None:
    for broker, result in comparison.results.items():
        out.print(f"[bold]--- {broker} ---[/]", markup=True)
        _print_matrix(result)
    common = comparison.common_cells
    cached = comparison.cached_poll_cells
    same_cached = [cell for cell in cached if cell not in comparison.differences]
    for (s, f), seen in comparison.differences.items():
        click.echo(
            f"differs between brokers: {s} fix={f}: "
            + ", ".join(f"{b}={o}" for b, o in seen.items())
        )
    click.echo(
        f"brokers {', '.join(comparison.results)}: {len(common) - len(comparison.differences)} "
        f"of {len(common)} cells had the same outcome on every broker; cached-poll cells: "
        f"{len(same_cached)} of {len(cached)} the same"
    )
    click.echo(f"results: {paths.relative(comparison.run_dir / 'brokers.md')}")


def _print_matrix(result: matrix.MatrixResult) -> None:
    from lab.reports.look import look_of
    from lab.runs import matrix

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("scenario [proxy]", no_wrap=True)
    for fix in result.fixes:
        table.add_column(fix, justify="center")
    last = result.last
    for name in result.scenarios:
        proxy = next((v.proxy for (s, _), v in last.items() if s == name), "")
        row = [escape(name if proxy == name else f"{name} [{proxy}]")]
        for fix in result.fixes:
            v = last.get((name, fix))
            if v is None:
                row.append("[dim]-[/]")
                continue
            look = look_of(v.observed)
            text = look.short
            if v.inconclusive:
                text = f"[bold reverse]{text}?[/]"  # not judged: the machine was too slow
            elif not v.matched:
                text = f"[bold reverse]{text}!={look_of(v.expected).short}[/]"
            row.append(f"[{look.terminal}]{text}[/]")
        table.add_row(*row)
    needed = 2 + max(len(n) for n in result.scenarios) + 20 + sum(len(f) + 2 for f in result.fixes)
    wide = Console(highlight=False, width=max(out.width, needed))
    wide.print(table)
    several = len(result.rounds) > 1
    for n, round_verdicts in enumerate(result.rounds, 1):
        where = f"round {n}: " if several else ""
        for v in round_verdicts.values():
            if v.inconclusive:
                click.echo(f"{where}not judged after {v.attempts} runs: {v.untested}")
            elif v.wrong:
                click.echo(f"{where}mismatch: {v.sentence}")
    for (s, f), outcomes in result.flips.items():
        click.echo(f"changed between rounds: {s} fix={f}: {' -> '.join(outcomes)}")
    alive = matrix.survivors(result)
    click.echo("survives every proxy profile: " + (", ".join(alive) if alive else "no fix"))
    click.echo(f"results: {paths.relative(result.run_dir / 'matrix.md')}")
    click.echo(f"matrix: {result.headline()} ({result.seconds:.1f} s)")


@main.command("up")
@click.argument("scenario", type=SCENARIO)
@click.option(
    "--fix", type=FIX, default="none", show_default=True, help="Fix strategy the page starts with."
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address the proxy listens on (0.0.0.0: every interface; the machine's own addresses "
    "are printed). Anything but loopback turns on proxy authentication (credentials are "
    "printed), so a classroom network never gets an open proxy.",
)
@runs_dir_option
@broker_options
def up_command(
    scenario: str,
    fix: str,
    host: str,
    runs_dir: Path | None,
    broker: str | None,
    broker_url: str | None,
) -> None:
    """Workshop mode: start SCENARIO's stack and keep it running until Ctrl-C."""
    from lab.runs import workshop

    with guarded(False, "stopped: every process was stopped", exit_on_stop=0):
        check_host(host)
        loaded, chosen_broker = check_for_run(scenario, fix, broker, broker_url, proxy_url=None)
        workshop.up(
            loaded,
            fix,
            runs_dir or paths.runs_dir(),
            progress,
            host=host,
            console=out,
            broker=chosen_broker,
        )
    sys.exit(0)


main.add_command(agent_command)
main.add_command(audit_command)
main.add_command(probe_command)
main.add_command(verify_command)
