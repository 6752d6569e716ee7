"""`lab`: reproduce a scenario and judge it against ground truth.

Exit codes: 0 observed == expected; 1 observed differs; 2 bad input (unknown scenario, fix or
profile, invalid scenario or profile file); 3 a component could not start or died; 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.data import fixes, paths, profiles, scenarios
from lab.data.errors import (
    EXIT_INTERRUPTED,
    EXIT_MATCHED,
    EXIT_MISMATCH,
    BadInput,
    ComponentError,
)
from lab.judging.evidence import Verdict
from lab.reports import publish
from lab.reports.look import look_of
from lab.runs import broker_comparison, matrix
from lab.runs import repro as repro_run
from lab.stacks.brokers import BROKERS, BrokerChoice

STARTED = time.monotonic()
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def _fail(exc: BadInput | ComponentError, as_json: bool) -> NoReturn:
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
def _guarded(as_json: bool, stopped: str, exit_on_stop: int = EXIT_INTERRUPTED) -> Iterator[None]:
    """Bad input and dead components end the command with their exit code and one line;
    Ctrl-C (and SIGTERM, SIGHUP) with `stopped` (every child was stopped by then)."""
    try:
        yield
    except (BadInput, ComponentError) as exc:
        _fail(exc, as_json)
    except KeyboardInterrupt:
        err.print(stopped, markup=False)
        sys.exit(exit_on_stop)


def _load_for_run(
    scenario: str,
    fix: str,
    broker: str | None,
    broker_url: str | None,
    proxy_url: str | None = None,
) -> tuple[scenarios.Scenario, BrokerChoice]:
    """Everything `repro` and `up` check before starting anything: BadInput if wrong."""
    loaded = scenarios.load(scenario)
    fixes.check(fix)
    loaded.expected_for(fix)  # a fix that does not apply is bad input too
    chosen_broker = _broker_for(loaded, broker, broker_url)
    if loaded.uses_proxy and not proxy_url:
        profiles.load(loaded.proxy)  # a bad profile is bad input: fail before starting
    return loaded, chosen_broker


def _progress(message: str) -> None:
    err.print(f"[dim]lab {time.monotonic() - STARTED:5.1f}s:[/] {escape(message)}", markup=True)


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Reproduce the bugs misbehaving HTTP proxies cause in apps that poll for background work."""
    # SIGTERM and SIGHUP stop a run the way Ctrl-C does: every child process is stopped.
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    signal.signal(signal.SIGHUP, _terminate_as_interrupt)


def runs_dir_option(f):
    return click.option(
        "--runs-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where run folders go (default: ./runs, or $LAB_RUNS_DIR).",
    )(f)


def client_option(f):
    return click.option(
        "--client",
        type=click.Choice(repro_run.CLIENTS),
        default="python",
        show_default=True,
        help="Who polls: the lab's Python client, or the app's real page in Chromium "
        "(needs Chromium: apt-get install -y chromium-headless-shell, or set LAB_CHROMIUM).",
    )(f)


def broker_options(f):
    f = click.option(
        "--broker-url",
        default=None,
        metavar="URL",
        help="Use this running Redis (redis://...) or RabbitMQ (amqp://...) instead of the "
        "lab's own redis-server or the default amqp://guest:guest@127.0.0.1:5672//.",
    )(f)
    return click.option(
        "--broker",
        type=click.Choice(BROKERS),
        default=None,
        help="Message broker and result backend: sqlite (files, no server), redis (the lab "
        "starts its own redis-server) or rabbitmq. Default: the scenario's own, sqlite for most.",
    )(f)


def _broker_for(scenario: scenarios.Scenario, broker: str | None, url: str | None) -> BrokerChoice:
    choice = BrokerChoice(broker or scenario.default_broker, url)
    if not scenario.runs_on(choice.kind):
        raise BadInput(
            f"scenario {scenario.name!r} runs on --broker {' or '.join(scenario.brokers)} "
            f"only, not {choice.kind}"
        )
    return choice


def proxy_options(f):
    f = click.option(
        "--proxy-mode",
        type=click.Choice(["forward", "reverse"]),
        default="forward",
        show_default=True,
        help="How --proxy-url is used: as the client's forward proxy, or as a reverse proxy "
        "in front of the app (then it must forward to the app's address).",
    )(f)
    return click.option(
        "--proxy-url",
        default=None,
        metavar="URL",
        help="Run through this real proxy (Squid, nginx, a corporate proxy) instead of the "
        "scenario's profile. It must reach the app on 127.0.0.1.",
    )(f)


@main.command("list")
def list_scenarios() -> None:
    """List the scenarios with one line each."""
    try:
        loaded = scenarios.load_all()
    except BadInput as exc:
        _fail(exc, as_json=False)
    width = max(len(sc.name) for sc in loaded) + 2
    for sc in loaded:
        click.echo(f"{sc.name:<{width}}{sc.summary}  [proxy: {sc.proxy}]")


@main.command()
@click.argument("scenario")
@click.option(
    "--fix", default="none", show_default=True, help="Fix strategy: none, nonce, no-store."
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@runs_dir_option
@proxy_options
@client_option
@broker_options
def repro(
    scenario: str,
    fix: str,
    as_json: bool,
    runs_dir: Path | None,
    proxy_url: str | None,
    proxy_mode: str,
    client: str,
    broker: str | None,
    broker_url: str | None,
) -> None:
    """Run SCENARIO (a name from `lab list`, or a .toml file) with one fix, and judge it."""
    with _guarded(as_json, "interrupted: every process of the run was stopped"):
        loaded, chosen_broker = _load_for_run(scenario, fix, broker, broker_url, proxy_url)
        _check_client(loaded, client)
        verdict = repro_run.run_until_tested(
            loaded,
            fix,
            runs_dir or paths.runs_dir(),
            _progress,
            proxy_url=proxy_url,
            proxy_mode=proxy_mode,
            client=client,
            broker=chosen_broker,
        )
        publish.publish_run(verdict, loaded)

    if as_json:
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
        table.add_row(
            "first stale answer",
            f"poll {stale['seq']} at {stale['at']} s: {headers or 'no cache headers'}",
        )
    table.add_row("evidence", paths.relative(Path(v.run_dir)))
    out.print(table)
    if v.lesson:
        out.print(f"lesson: {v.lesson.strip()}", markup=False)


def _check_client(scenario: scenarios.Scenario, client: str) -> None:
    if not scenario.runs_with(client):
        why = f": {scenario.client_notes}" if scenario.client_notes else ""
        raise BadInput(
            f"scenario {scenario.name!r} is reproduced by --client "
            f"{' or '.join(scenario.clients)} only, not {client}{why}"
        )


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@main.command("matrix")
@click.option("--scenarios", "only_scenarios", metavar="A,B", help="Only these scenarios.")
@click.option("--fixes", "only_fixes", metavar="X,Y", help="Only these fixes.")
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
    default=matrix.DEFAULT_CONCURRENCY,
    show_default=True,
    help="Cells running at once (and worker threads).",
)
@click.option(
    "--brokers",
    "broker_list",
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
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@runs_dir_option
@proxy_options
@client_option
@broker_options
def matrix_command(
    only_scenarios: str | None,
    only_fixes: str | None,
    repeat: int,
    concurrency: int,
    broker_list: str | None,
    screenshots: str,
    as_json: bool,
    runs_dir: Path | None,
    proxy_url: str | None,
    proxy_mode: str,
    client: str,
    broker: str | None,
    broker_url: str | None,
) -> None:
    """Run every scenario against every fix that applies, and print the table.

    Each scenario runs on its own default broker unless --broker or --brokers says otherwise;
    scenarios that cannot run on a broker are left out of its matrix, and said so.
    """
    with _guarded(as_json, "interrupted: every process of the matrix was stopped"):
        brokers = _split(broker_list) or ([broker] if broker else [])
        if broker_list and broker:
            raise BadInput("--broker and --brokers: give one of them")
        for kind in brokers:
            if kind not in BROKERS:
                raise BadInput(f"--brokers: {kind!r} is not one of {', '.join(BROKERS)}")
        if broker_url and len({b for b in brokers if b != "sqlite"}) != 1:
            raise BadInput("--broker-url needs exactly one redis or rabbitmq broker to go with")
        if broker_url:
            BrokerChoice(next(b for b in brokers if b != "sqlite"), broker_url)  # checks the URL
        names = _split(only_scenarios)
        if names:
            loaded = [scenarios.load(name) for name in names]
            for sc in loaded:
                _check_client(sc, client)
        else:  # all of them: those the client cannot reproduce are left out, and said so
            loaded = [sc for sc in scenarios.load_all() if sc.runs_with(client)]
            for name in sorted(set(scenarios.names()) - {sc.name for sc in loaded}):
                err.print(f"{name}: left out, not reproduced by the {client} client", markup=False)
        for kind in brokers:
            for sc in loaded:
                if not sc.runs_on(kind):
                    err.print(
                        f"{sc.name}: left out on {kind}, it runs on {' or '.join(sc.brokers)} only",
                        markup=False,
                    )
        wanted_fixes = _split(only_fixes) or fixes.names()
        for fix in wanted_fixes:
            fixes.check(fix)
        if not proxy_url:
            for sc in loaded:
                if sc.uses_proxy:
                    profiles.load(sc.proxy)
        common = {
            "scenarios": loaded,
            "fixes": wanted_fixes,
            "repeat": repeat,
            "concurrency": concurrency,
            "proxy_url": proxy_url,
            "proxy_mode": proxy_mode,
            "client": client,
            "screenshots": screenshots,
        }
        if len(brokers) > 1:
            comparison = broker_comparison.run_broker_comparison(
                brokers, runs_dir or paths.runs_dir(), _progress, broker_url=broker_url, **common
            )
            publish.publish_comparison(comparison, loaded)
        else:
            result = matrix.run_matrix(
                runs_root=runs_dir or paths.runs_dir(),
                progress=_progress,
                broker=brokers[0] if brokers else None,
                broker_url=broker_url,
                **common,
            )
            publish.publish_matrix(result, loaded)
    if len(brokers) > 1:
        if as_json:
            click.echo(json.dumps(comparison.to_json()))
        else:
            _print_comparison(comparison)
        sys.exit(EXIT_MATCHED if comparison.ok else EXIT_MISMATCH)
    if as_json:
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
@click.argument("scenario")
@click.option("--fix", default="none", show_default=True, help="Fix strategy the page starts with.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address the proxy listens on. Anything but loopback turns on proxy authentication "
    "(credentials are printed), so a classroom network never gets an open proxy.",
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

    with _guarded(False, "stopped: every process was stopped", exit_on_stop=0):
        loaded, chosen_broker = _load_for_run(scenario, fix, broker, broker_url)
        workshop.up(
            loaded,
            fix,
            runs_dir or paths.runs_dir(),
            _progress,
            host=host,
            console=out,
            broker=chosen_broker,
        )
    sys.exit(0)
