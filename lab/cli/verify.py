"""`lab verify`: each profile's real product (Squid, nginx...) against the simulated profile,
cell by cell. Exit codes: 0 every cell agrees; 1 any cell differs (or could not be judged on a
side); 2 bad input (an unknown profile, one without [real], a bad template); 3 the product is
not installed (the message says how to install it), could not start, or died; 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.cli.agent import dispatch_options
from lab.cli.options import Names, runs_dir_option
from lab.cli.output import guarded, out, progress
from lab.data import paths, profiles
from lab.data.errors import EXIT_MATCHED, EXIT_MISMATCH, BadInput

if TYPE_CHECKING:
    from lab.verify.run import VerifyResult

PROFILE = Names("profile", profiles.names)
DEFAULT_CONCURRENCY = 48  # lab.verify.run's, without importing it for `lab --help`


@click.command("verify")
@click.argument("profile", required=False, type=PROFILE)
@click.option(
    "--all", "all_profiles", is_flag=True, help="Every profile with a [real] table, at once."
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="Cells running at once on each side.",
)
@click.option(
    "--suite",
    is_flag=True,
    help="Also run the HTTP caching test suite through each real product and its profile, "
    "and print how many required tests have the same result (needs Node; the exit code is "
    "still the cells').",
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@dispatch_options
@runs_dir_option
def verify_command(
    profile: str | None,
    all_profiles: bool,
    concurrency: int,
    suite: bool,
    as_json: bool,
    dispatch_url: str | None,
    evidence_dir: Path | None,
    cell_deadline: float | None,
    runs_dir: Path | None,
) -> None:
    """Run PROFILE's cells through the real product its [real] table names and through the
    simulated profile, and compare them cell by cell.

    The cells: every scenario whose proxy is PROFILE, with every fix that applies, polled by
    the Python client. The product runs from the system's packages on 127.0.0.1, its
    configuration the template in proxies/real/ filled in. With --suite, the HTTP caching
    test suite (npm http-cache-tests, installed on first use) then runs through each product,
    as a reverse proxy, and through its profile, and the required tests with the same result
    are counted (the goal: 90%); the exit code is still the cells'.

    With --dispatch, each profile's verification (both sides, and the suite) is run by a
    `lab agent` serving that Redis whose host has the product; the results are merged into
    this run's table, verify.json and exit code.
    """
    # Imported here, not at the top: every `lab` command loads this module.
    from lab.verify import run as verify_run
    from lab.verify.real import real_profiles

    with guarded(as_json, "interrupted: every process of the verification was stopped"):
        if all_profiles == (profile is not None):
            raise BadInput("lab verify: give one PROFILE or --all")
        chosen = real_profiles() if all_profiles else [profile or ""]
        if not chosen:
            raise BadInput("lab verify --all: no profile has a [real] table")
        if dispatch_url:
            from lab.runs.agent_protocol import check_dispatch_url
            from lab.verify.dispatch import run_dispatched_verify

            check_dispatch_url(dispatch_url)
            result = run_dispatched_verify(
                chosen,
                runs_dir or paths.runs_dir(),
                progress,
                dispatch_url=dispatch_url,
                evidence_dir=evidence_dir,
                deadline=cell_deadline,
                concurrency=concurrency,
                suite=suite,
            )
        elif evidence_dir or cell_deadline:
            raise BadInput("--evidence-dir and --cell-deadline go with --dispatch")
        else:
            result = verify_run.run_verify(
                chosen, runs_dir or paths.runs_dir(), progress, concurrency=concurrency, suite=suite
            )
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        print_verification(result)
    sys.exit(EXIT_MATCHED if result.ok else EXIT_MISMATCH)


def print_verification(result: VerifyResult) -> None:
    from lab.reports.look import look_of

    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("profile", "scenario", "fix", "real", "simulated", ""):
        table.add_column(name, no_wrap=True)
    for verification in result.profiles:
        for cell in verification.cells:
            outcomes = [
                f"[{look_of(outcome).terminal}]{escape(outcome)}[/]"
                for outcome in (cell.real, cell.simulated)
            ]
            table.add_row(
                escape(cell.profile),
                escape(cell.scenario),
                escape(cell.fix),
                *outcomes,
                "agree" if cell.agree else f"[bold reverse]{cell.status.upper()}[/]",
            )
    cells = result.cells
    columns = [
        [c.profile for c in cells],
        [c.scenario for c in cells],
        [c.fix for c in cells],
        [c.real for c in cells],
        [c.simulated for c in cells],
        ["NOT JUDGED"],
    ]
    needed = sum(max(map(len, column), default=0) + 2 for column in columns)
    Console(highlight=False, width=max(out.width, needed)).print(table)
    for cell in result.disagreements:
        click.echo(f"{'mismatch' if cell.status == 'differs' else 'not judged'}: {cell.describe()}")
    for agreement in result.suites:
        click.echo(f"suite, {agreement.profile}:")
        click.echo(agreement.summary())
    for verification in result.profiles:
        click.echo(verification.summary())
    click.echo(f"results: {paths.relative(result.run_dir / 'verify.json')}")
    click.echo(f"verify: {result.headline()} ({result.seconds:.1f} s)")
