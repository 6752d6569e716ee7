"""What `lab` is asked on its command line: the options, the names the shell can complete
(scenarios, fixes, brokers), and every check made before anything starts (BadInput if wrong).

Names are read from the data folders only when a shell asks for completions or a command checks
its input: `lab --help` reads none, and a bad data folder is an `error:` line, never a crash.
Checking is not left to click: a bad name must be the lab's one `error:` line (or one JSON
object with --json), exit 2, as every other bad input is.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from click.shell_completion import CompletionItem

from lab.data import fixes, kinds, paths, profiles, scenarios
from lab.data.errors import BadInput
from lab.runs.shared_stacks import app_stacks_needed
from lab.stacks.brokers import BROKERS, BrokerChoice
from lab.stacks.proxy_url import check_app_port, check_proxy_reachable, check_proxy_url

Command = TypeVar("Command", bound=Callable[..., Any])


class Names(click.ParamType):
    """A name from a list read when needed; completes it in the shell. With `several`, a
    comma-separated list of them (`--scenarios a,b`), completed one name after the other."""

    def __init__(
        self, name: str, read: Callable[[], Iterable[str]], *, several: bool = False
    ) -> None:
        self.name = name
        self.read = read
        self.several = several

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value  # checked by the command, where a bad name is the lab's `error:` line

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        given, _, last = incomplete.rpartition(",") if self.several else ("", "", incomplete)
        try:
            known = list(self.read())
        except (BadInput, OSError):  # a bad LAB_* variable or data folder: nothing to offer
            return []
        done = set(given.split(","))
        prefix = f"{given}," if given else ""
        return [
            CompletionItem(prefix + name)
            for name in known
            if name.startswith(last) and name not in done
        ]


class ScenarioName(Names):
    """A scenario's name, or the path of a scenario file: the shell completes file names when
    what was typed is no scenario's name."""

    def __init__(self) -> None:
        super().__init__("scenario", scenarios.names)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return super().shell_complete(ctx, param, incomplete) or [
            CompletionItem(incomplete, type="file")
        ]


SCENARIO = ScenarioName()
FIX = Names("fix", fixes.names)
SCENARIO_LIST = Names("scenarios", scenarios.names, several=True)
FIX_LIST = Names("fixes", fixes.names, several=True)
BROKER_LIST = Names("brokers", lambda: BROKERS, several=True)


@dataclass(frozen=True)
class RunOptions:
    """The options `repro` and `matrix` share: where runs go, what polls through which proxy,
    on which broker, and how the result is printed."""

    as_json: bool
    runs_dir: Path | None
    proxy_url: str | None
    proxy_mode: str
    app_port: int | None
    client: str
    broker: str | None
    broker_url: str | None

    @property
    def runs_root(self) -> Path:
        return self.runs_dir or paths.runs_dir()


def selection_options(f: Command) -> Command:
    """--scenarios and --fixes: the part of the matrix a command runs (lab matrix, lab agent)."""
    f = click.option(
        "--fixes", "only_fixes", type=FIX_LIST, metavar="X,Y", help="Only these fixes."
    )(f)
    return click.option(
        "--scenarios",
        "only_scenarios",
        type=SCENARIO_LIST,
        metavar="A,B",
        help="Only these scenarios.",
    )(f)


def runs_dir_option(f: Command) -> Command:
    return click.option(
        "--runs-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where run folders go (default: ./runs, or $LAB_RUNS_DIR).",
    )(f)


def broker_options(f: Command) -> Command:
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


def run_options(f: Command) -> Command:
    """The options of RunOptions, handed to the command as one `run` argument."""

    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        fields = {name: kwargs.pop(name) for name in RunOptions.__dataclass_fields__}
        return f(*args, run=RunOptions(**fields), **kwargs)

    options = [
        click.option(
            "--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout."
        ),
        runs_dir_option,
        click.option(
            "--proxy-url",
            default=None,
            metavar="URL",
            help="Run through this real proxy (Squid, nginx, a corporate proxy) instead of the "
            "scenario's profile. It must reach the app on 127.0.0.1.",
        ),
        click.option(
            "--proxy-mode",
            type=click.Choice(["forward", "reverse"]),
            default="forward",
            show_default=True,
            help="How --proxy-url is used: as the client's forward proxy, or as a reverse proxy "
            "in front of the app (then it must forward to 127.0.0.1:--app-port).",
        ),
        click.option(
            "--app-port",
            type=click.IntRange(1, 65535),
            default=None,
            metavar="PORT",
            help="The app listens on 127.0.0.1:PORT instead of a free port picked at start: "
            "where a real reverse proxy (--proxy-mode reverse) forwards to.",
        ),
        click.option(
            "--client",
            type=click.Choice(kinds.CLIENTS),
            default="python",
            show_default=True,
            help="Who polls: the lab's Python client, or the app's real page in Chromium "
            "(needs Chromium: apt-get install -y chromium-headless-shell, or set LAB_CHROMIUM).",
        ),
        broker_options,
    ]
    for option in reversed(options):  # click lists options in the order they are applied
        command = option(command)
    return command  # type: ignore[return-value]


def check_proxy_options(run: RunOptions, chosen: list[scenarios.Scenario] | None = None) -> None:
    """--proxy-url, --proxy-mode and --app-port, before anything starts: BadInput (exit 2)
    when they cannot go together, ComponentError (exit 3) when the proxy cannot be reached or
    the app's port is taken. Called after every other input check.

    An HTTPS scenario goes through a forward --proxy-url as CONNECT (a real Squid tunnels it);
    a reverse one cannot be given one: its client trusts only the run's CAs, made per run, so
    no proxy set up beforehand can hold a certificate it accepts."""
    if run.proxy_url is None:
        return
    check_proxy_url(run.proxy_url)
    if run.proxy_mode == "reverse" and run.app_port is None:
        raise BadInput(
            "--proxy-mode reverse needs --app-port PORT: the reverse proxy at --proxy-url "
            "must forward to the app at 127.0.0.1:PORT"
        )
    https = [sc.name for sc in chosen or [] if sc.tls is not None]
    if run.proxy_mode == "reverse" and https:
        raise BadInput(
            f"--proxy-mode reverse: {', '.join(https)} is HTTPS, and its client trusts only the "
            "run's own CAs, made per run: no reverse proxy set up beforehand can show it a "
            "certificate; use a forward --proxy-url (CONNECT), or leave these scenarios out"
        )
    check_proxy_reachable(run.proxy_url)
    if run.app_port is not None:
        check_app_port(run.app_port)


def check_app_port_alone(run: RunOptions) -> None:
    """--app-port without --proxy-url: only the port's check (exit 3 when taken)."""
    if run.proxy_url is None and run.app_port is not None:
        check_app_port(run.app_port)


def check_for_run(
    scenario: str, fix: str, broker: str | None, broker_url: str | None, proxy_url: str | None
) -> tuple[scenarios.Scenario, BrokerChoice]:
    """Everything `repro` and `up` check before starting anything: BadInput if wrong."""
    if proxy_url is not None:
        check_proxy_url(proxy_url)
    loaded = scenarios.load(scenario)
    fixes.check(fix)
    loaded.expected_for(fix)  # a fix that does not apply is bad input too
    chosen_broker = broker_for(loaded, broker, broker_url)
    if loaded.uses_proxy and not proxy_url:
        profiles.load(loaded.proxy)  # a bad profile is bad input: fail before starting
    return loaded, chosen_broker


def check_host(host: str) -> None:
    """`lab up --host`: the lab's listeners and port checks are IPv4 only."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a name (localhost): it resolves as the lab binds
    if address.version != 4:
        raise BadInput(
            f"--host {host!r} is an IPv6 address: the lab listens on IPv4 only (127.0.0.1, "
            "an address of this machine, or 0.0.0.0 for every interface)"
        )


def broker_for(scenario: scenarios.Scenario, broker: str | None, url: str | None) -> BrokerChoice:
    choice = BrokerChoice(broker or scenario.default_broker, url)
    if not scenario.runs_on(choice.kind):
        raise BadInput(
            f"scenario {scenario.name!r} runs on --broker {' or '.join(scenario.brokers)} "
            f"only, not {choice.kind}"
        )
    return choice


def check_client(scenario: scenarios.Scenario, client: str) -> None:
    if not scenario.runs_with(client):
        why = f": {scenario.client_notes}" if scenario.client_notes else ""
        raise BadInput(
            f"scenario {scenario.name!r} is reproduced by --client "
            f"{' or '.join(scenario.clients)} only, not {client}{why}"
        )


@dataclass(frozen=True)
class MatrixSelection:
    scenarios: list[scenarios.Scenario]
    fixes: list[str]
    brokers: list[str]  # none: each scenario on its own default; several: a broker comparison


def check_for_matrix(
    only_scenarios: str | None,
    only_fixes: str | None,
    broker_list: str | None,
    run: RunOptions,
    say: Callable[[str], None],
) -> MatrixSelection:
    """What `matrix` runs, checked before anything starts (BadInput if wrong); `say` tells
    which scenarios are left out, and why."""
    brokers = split(broker_list) or ([run.broker] if run.broker else [])
    if broker_list and run.broker:
        raise BadInput("--broker and --brokers: give one of them")
    for kind in brokers:
        if kind not in BROKERS:
            raise BadInput(f"--brokers: {kind!r} is not one of {', '.join(BROKERS)}")
    if run.broker_url and len({b for b in brokers if b != "sqlite"}) != 1:
        raise BadInput("--broker-url needs exactly one redis or rabbitmq broker to go with")
    if run.broker_url:
        BrokerChoice(next(b for b in brokers if b != "sqlite"), run.broker_url)  # checks the URL
    names = split(only_scenarios)
    if names:
        loaded = [scenarios.load(name) for name in names]
        for sc in loaded:
            check_client(sc, run.client)
    else:  # all of them: those the client cannot reproduce are left out, and said so
        loaded = [sc for sc in scenarios.load_all() if sc.runs_with(run.client)]
        for name in sorted(set(scenarios.names()) - {sc.name for sc in loaded}):
            say(f"{name}: left out, not reproduced by the {run.client} client")
    for kind in brokers:
        for sc in loaded:
            if not sc.runs_on(kind):
                say(f"{sc.name}: left out on {kind}, it runs on {' or '.join(sc.brokers)} only")
    wanted_fixes = split(only_fixes) or fixes.names()
    for fix in wanted_fixes:
        fixes.check(fix)
    if not run.proxy_url:
        for sc in loaded:
            if sc.uses_proxy:
                profiles.load(sc.proxy)
    if run.app_port is not None:
        cells = [(sc, fix) for sc in loaded for fix in wanted_fixes if sc.applies(fix)]
        stacks = app_stacks_needed(cells)
        if len(stacks) > 1:
            raise BadInput(
                f"--app-port {run.app_port}: these cells need {len(stacks)} app stacks "
                f"({', '.join(stacks)}), one port serves one; choose one scenario with --scenarios"
            )
    return MatrixSelection(loaded, wanted_fixes, brokers)


def split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None
