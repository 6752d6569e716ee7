"""`lab audit`: would the user's own polling survive the proxies their users sit behind, and
which fix do they need? Exit codes: 0 every cell completed; 1 any did not (or was not judged);
2 bad input (flow file, option, profile); 3 the app or a component could not start or died;
130 interrupted."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

from lab.cli.agent import dispatch_options
from lab.cli.options import Names, runs_dir_option, split
from lab.cli.output import guarded, out, progress
from lab.data import flows, paths, profiles
from lab.data.errors import EXIT_MATCHED, EXIT_MISMATCH, BadInput

if TYPE_CHECKING:
    from lab.runs.audit import AuditResult

PROFILE_LIST = Names("profiles", lambda: ["all", *profiles.names()], several=True)
CLIENT_FIX_LIST = Names("client fixes", lambda: ["all", *flows.CLIENT_FIXES], several=True)


def json_value(text: str) -> Any:
    """A final state as typed: true, false and numbers as JSON, anything else as a string."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, bool | int | float) else text


def choose_profiles(given: str | None) -> list[str]:
    names = split(given)
    if not names:
        return profiles.deployment_names()
    if names == ["all"]:
        return profiles.names()
    for name in names:
        profiles.load(name)  # BadInput naming the unknown one
    return list(dict.fromkeys(names))


def choose_strategies(given: str | None) -> list[str]:
    names = split(given) or []
    if names == ["all"]:
        names = list(flows.CLIENT_FIXES)
    for name in names:
        if name not in flows.CLIENT_FIXES:
            known = ", ".join(flows.CLIENT_FIXES)
            raise BadInput(f"--client-fixes: unknown client fix {name!r} (known: {known}, all)")
    return [flows.APP_POLLING, *dict.fromkeys(names)]


def build_flow(flow_file: Path | None, options: dict[str, Any]) -> flows.Flow:
    base = flows.load(flow_file) if flow_file else None
    start_method = start_path = status_method = status_path = None
    if options["start"]:
        start_method, start_path = flows.parse_request_line(options["start"], "--start")
    if options["status"]:
        status_method, status_path = flows.parse_request_line(options["status"], "--status")
    finals = split(options["final_states"])
    failures = split(options["failure_states"])
    return flows.from_options(
        base,
        **{
            "app.url": options["app_url"],
            "app.commands": options["app_cmd"] or None,
            "app.procfile": options["procfile"],
            "app.cacert": options["cacert"],
            "start.method": start_method or None,
            "start.path": start_path,
            "start.json": (
                flows.parse_json_option(options["start_json"], "--start-json")
                if options["start_json"]
                else None
            ),
            "start.task_id": options["task_id_at"],
            "status.method": status_method or None,
            "status.path": status_path,
            "status.shape": options["shape"],
            "status.state": options["state_at"],
            "status.final_states": [json_value(v) for v in finals] if finals else None,
            "status.failure_states": [json_value(v) for v in failures] if failures else None,
            "status.task_id": options["status_task_id_at"],
            "polling.interval_s": options["poll_interval"],
            "polling.hang_window_s": options["hang_window"],
        },
    )


@click.command("audit")
@click.argument("flow_file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--app-url", metavar="URL", help="The app, already running (http://127.0.0.1:8000).")
@click.option(
    "--app-cmd",
    multiple=True,
    metavar="CMD",
    help="Start the app with this command (repeat: the first is the web server, on {port} or "
    "$PORT; then its worker).",
)
@click.option("--procfile", metavar="FILE", help="Start the app from a Procfile (web on $PORT).")
@click.option(
    "--cacert",
    metavar="FILE",
    help="The CA (PEM) that verifies an https:// app's certificate; the pollers trust it alone.",
)
@click.option(
    "--tls",
    "forward_tls",
    type=click.Choice(["tunnel", "inspect"]),
    help="HTTPS app: forward profiles tunnel CONNECT (default) or inspect TLS like a managed "
    "laptop's gateway; reverse profiles always terminate TLS at their edge.",
)
@click.option("--start", metavar="'METHOD /path'", help="The request that starts the work.")
@click.option("--start-json", metavar="JSON", help="Its JSON body.")
@click.option("--task-id-at", metavar="PATH", help="Where the task id is: a.b, or header:Location.")
@click.option("--status", metavar="'METHOD /path/{id}'", help="The status request.")
@click.option(
    "--shape", type=click.Choice(list(flows.SHAPES)), help="Preset for the status answer."
)
@click.option("--state-at", metavar="PATH", help="Where the state is in the status answer.")
@click.option("--final-states", metavar="A,B", help="States that end the polling (true: JSON).")
@click.option("--failure-states", metavar="A,B", help="Final states that mean failure.")
@click.option("--status-task-id-at", metavar="PATH", help="The task id in the status answer.")
@click.option("--poll-interval", type=click.FloatRange(min=0, min_open=True), metavar="S")
@click.option("--hang-window", type=click.FloatRange(min=0, min_open=True), metavar="S")
@click.option(
    "--profiles",
    "profile_list",
    type=PROFILE_LIST,
    metavar="A,B|all",
    help="Proxy profiles to audit behind (default: every one standing for a real deployment).",
)
@click.option(
    "--client-fixes",
    type=CLIENT_FIX_LIST,
    metavar="X,Y|all",
    help="Also poll with these client-side fixes: nonce, path-nonce, post, request-no-cache.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=flows.DEFAULT_AUDIT_CONCURRENCY,
    show_default=True,
    help="Cells running at once.",
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@dispatch_options
@runs_dir_option
def audit_command(
    flow_file: Path | None,
    profile_list: str | None,
    client_fixes: str | None,
    concurrency: int,
    forward_tls: str | None,
    as_json: bool,
    dispatch_url: str | None,
    evidence_dir: Path | None,
    cell_deadline: float | None,
    runs_dir: Path | None,
    **options: Any,
) -> None:
    """Put your own app's start-and-poll flow behind proxy profiles and judge each cell.

    FLOW_FILE is a TOML flow (see examples/*/audit.toml); options override its values.
    With --dispatch, each profile's cells are run by a `lab agent` serving that Redis that
    was started with --flow FLOW_FILE (the same file, by name and sha256).
    """
    # Imported here, not at the top: every `lab` command loads this module, and the audit's
    # run and report modules are most of a second of imports.
    from lab.reports.audit_page import publish_audit
    from lab.runs import audit as audit_run

    with guarded(as_json, "interrupted: every process of the audit was stopped"):
        check_audit_dispatch(dispatch_url, flow_file, evidence_dir, cell_deadline, options)
        flow = build_flow(flow_file, options)
        if forward_tls and not flow.https:
            raise BadInput(
                f"--tls {forward_tls}: the app is plain HTTP (an https:// app needs --cacert, "
                "or {certfile}/{keyfile} in its command)"
            )
        chosen = choose_profiles(profile_list)
        strategies = choose_strategies(client_fixes)
        if dispatch_url:
            from lab.runs.dispatch_audit import run_dispatched_audit

            assert flow_file is not None  # check_audit_dispatch said so
            result = run_dispatched_audit(
                flow_file,
                flow,
                chosen,
                strategies,
                runs_dir or paths.runs_dir(),
                progress,
                dispatch_url=dispatch_url,
                evidence_dir=evidence_dir,
                deadline=cell_deadline,
                concurrency=concurrency,
                forward_tls=forward_tls or "tunnel",
            )
        else:
            result = audit_run.run_audit(
                flow,
                chosen,
                strategies,
                runs_dir or paths.runs_dir(),
                progress,
                concurrency=concurrency,
                forward_tls=forward_tls or "tunnel",  # type: ignore[arg-type]
            )
        page = publish_audit(result)
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        print_audit(result, page)
    sys.exit(EXIT_MATCHED if result.ok else EXIT_MISMATCH)


def check_audit_dispatch(
    url: str | None,
    flow_file: Path | None,
    evidence_dir: Path | None,
    cell_deadline: float | None,
    options: dict[str, Any],
) -> None:
    """What --dispatch cannot go with: agents audit only flow files they have, as they are."""
    from lab.runs.agent_protocol import check_dispatch_url

    if not url:
        if evidence_dir or cell_deadline:
            raise BadInput("--evidence-dir and --cell-deadline go with --dispatch")
        return
    check_dispatch_url(url)
    if flow_file is None:
        raise BadInput(
            "--dispatch needs a FLOW_FILE: agents audit only flow files they have "
            "(lab agent --flow FILE), not a flow given by options"
        )
    for name, value in options.items():
        if value is not None and value != ():
            raise BadInput(
                f"--dispatch and --{name.replace('_', '-')}: agents audit the flow file as it "
                "is (change the file, and give it to the agents)"
            )


def print_audit(result: AuditResult, page: Path | None) -> None:
    from lab.reports.audit_page import failing_reasons
    from lab.reports.look import look_of

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column(escape("profile [mode" + (", TLS]" if result.tls else "]")), no_wrap=True)
    for strategy in result.strategies:
        table.add_column(strategy, justify="center")
    for profile in result.profiles:
        tls = f", {result.tls['profiles'][profile]['mode']}" if result.tls else ""
        row = [escape(f"{profile} [{profiles.load(profile).mode}{tls}]")]
        for strategy in result.strategies:
            cell = result.cells[(profile, strategy)]
            look = look_of(cell.outcome)
            text = (
                look.short
                if cell.outcome in ("completed", "hung", "errored", "leaked")
                else (cell.outcome)
            )
            row.append(f"[{look.terminal}]{escape(text)}[/]")
        table.add_row(*row)
    out.print(table)
    for reason in failing_reasons(result):
        click.echo(f"- {reason}")
    for cell in result.cells.values():
        if cell.not_applicable and cell.profile == result.profiles[0]:
            click.echo(f"{cell.strategy}: not used: {cell.not_applicable}")
    for line in result.tls_lines():
        click.echo(f"tls: {line}")
    if result.status_sample is not None:
        sample = result.status_sample
        out.print(f"[bold]the status answer, straight from the app[/] (HTTP {sample.status}):")
        for name, value in sample.headers:
            click.echo(f"  {name}: {value}")
        if result.freshness:
            click.echo(f"  -> {result.freshness}")
        for note in result.lint:
            if note.level in ("warning", "bad") or note.category.lower().startswith("cach"):
                click.echo(f"  [{note.level}] {note.summary}")
    if result.recommendation is not None:
        out.print("[bold]which fix you need[/] (from the lab's checked scenarios):")
        for line in result.recommendation.lines():
            click.echo(f"  {line}")
    if page is not None:
        click.echo(f"report: {paths.relative(page)}")
    click.echo(f"audit: {result.headline()} ({result.seconds:.1f} s)")
