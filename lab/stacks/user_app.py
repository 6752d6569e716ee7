"""The user's own app for `lab audit`: reached at the URL it runs at, or started from its
commands (or Procfile) like the lab's own children: each in its own session, its log in the run
folder, stopped on every way out, and named with its log tail when it does not come up or dies.

The web server is the first command (a Procfile's `web`); the lab chooses its port and passes
it as `{port}` in the command, and as `$PORT` (Heroku's convention, which most Procfiles use).
Commands run through `/bin/sh -c`, as foreman and Heroku run a Procfile's, with the lab's own
environment's programs first on PATH; each on a leash (lab/stacks/leash.py), which stops its
whole session when the lab dies, even of SIGKILL.

An HTTPS app (lab/runs/audit_tls.py) is asked for at https:// and its certificate verified with
the app's CA alone: one that CA does not verify is a ComponentError (exit 3) at once, never a
wait for an app that will not answer. `{certfile}` and `{keyfile}` are the run's certificate
for 127.0.0.1 and its key (in `<run>/tls/`).
"""

from __future__ import annotations

import os
import shlex
import signal
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from lab.data import flows
from lab.data.errors import ComponentError
from lab.data.flows import Flow
from lab.stacks import leash
from lab.stacks.ports import LOOPBACK, free_port, launch_retrying_taken_ports, listens_itself
from lab.stacks.processes import Component, Supervisor
from lab.stacks.tls import RunTls

PREFIX = "app-"  # the user's processes: app-web, app-worker... (their logs: app-web.log)
READY_PROBE_TIMEOUT = 2.0
# The audit has its verdicts when it stops the app: a Celery worker's warm shutdown (4-5 s on
# some transports) need not be waited for.
STOP_GRACE = 1.0  # one readiness GET; the whole wait is the flow's start_timeout_s


@dataclass
class UserApp:
    url: str  # http://127.0.0.1:PORT (or the URL given)
    components: list[Component] = field(default_factory=list)  # empty: the lab did not start it

    @property
    def started_by_lab(self) -> bool:
        return bool(self.components)


def commands(flow: Flow) -> list[tuple[str, str]]:
    """(component name, command) for each process to start, the web server first."""
    if flow.app.procfile is not None:
        return flows.procfile_commands(flow.base_dir / flow.app.procfile)
    named = []
    for n, command in enumerate(flow.app.commands):
        if n == 0:
            name = "web"
        elif len(flow.app.commands) == 2:
            name = "worker"
        else:
            name = f"process-{n + 1}"
        named.append((name, command))
    return named


def fill_in(text: str, port: int, data_dir: Path, tls: RunTls | None = None) -> str:
    """The placeholders of a command or env value, each quoted for the shell where needed."""
    if tls is not None:
        text = text.replace("{certfile}", shlex.quote(str(tls.app_cert)))
        text = text.replace("{keyfile}", shlex.quote(str(tls.app_key)))
    return (
        text.replace("{port}", str(port))
        .replace("{data_dir}", str(data_dir))
        .replace("{python}", shlex.quote(sys.executable))
    )


def answers_http(url: str, verify: ssl.SSLContext | None = None, ca: str = "") -> bool:
    """The web server answered a GET with anything but a server error. `verify`: an https://
    app's CA (`ca` names it): a certificate it does not verify is ComponentError (exit 3)."""
    try:
        with httpx.Client(trust_env=False, timeout=READY_PROBE_TIMEOUT, verify=verify or True) as c:
            return c.get(url).status_code < 500
    except httpx.HTTPError as exc:
        if verify is not None and (problem := _certificate_problem(exc)):
            raise ComponentError(
                "app", f"the certificate of {url} is not verified by {ca}: {problem}"
            ) from None
        return False


def _certificate_problem(exc: BaseException) -> str | None:
    """The certificate verification error behind a failed request, or None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def reach(flow: Flow, verify: ssl.SSLContext | None = None, ca: str = "") -> UserApp:
    """An app already running: it must answer its ready path, else ComponentError (exit 3)."""
    assert flow.app.url is not None
    probe = f"{flow.app.url}{flow.app.ready_path}"
    if not answers_http(probe, verify, ca):
        raise ComponentError("app", f"no HTTP answer below 500 at {probe} (is it running?)")
    return UserApp(flow.app.url)


@dataclass
class Launch:
    """An app being started: the URL it will answer at (the port is the lab's choice, so it is
    known before the app is up) and the function that waits for it."""

    url: str
    ready: Callable[[], UserApp]


def launch(
    sup: Supervisor,
    flow: Flow,
    tls: RunTls | None = None,
    verify: ssl.SSLContext | None = None,
    ca: str = "",
) -> Launch:
    """Start the flow's commands. `ready()` waits until the web server answers (every process
    still alive) and gives the app; a port taken between the lab's choice and the server's bind
    is chosen again (as for the lab's own servers), so its URL may then differ from `url`.
    `verify` (with `ca`, its name): the app serves HTTPS; `tls`: the run's certificates for
    `{certfile}`/`{keyfile}`."""
    scheme = "https" if verify is not None else "http"
    data_dir = sup.run_dir / "app-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    named = commands(flow)

    def start() -> tuple[Component, int]:
        port = free_port()
        env = {name: fill_in(value, port, data_dir, tls) for name, value in flow.app.env.items()}
        env["PORT"] = str(port)
        # The lab's own environment's programs first (gunicorn, celery, uvicorn installed beside
        # it), as `uv run` or an activated venv would have them: a Procfile names programs.
        env.setdefault(
            "PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        )
        started = []
        for name, command in named:
            component = sup.add(
                f"{PREFIX}{name}",
                # On a leash: the app, the shell's child, gets no death signal of its own, and
                # a SIGKILLed lab left it serving.
                leash.command(
                    ["/bin/sh", "-c", fill_in(command, port, data_dir, tls)], grace=STOP_GRACE
                ),
                extra_env=env,
                cwd=flow.cwd,
            )
            component.stop_grace = STOP_GRACE
            started.append(component)
        return started[0], port

    def wait(web: Component, port: int) -> None:
        url = f"{scheme}://{LOOPBACK}:{port}{flow.app.ready_path}"
        sup.wait_until(
            web,
            lambda: answers_http(url, verify, ca) and listens_itself(web, port),
            f"an answer to GET {flow.app.ready_path} on port {port}",
            timeout=flow.app.start_timeout_s,
        )

    first, launched = launch_retrying_taken_ports(sup, start, wait, again=_restart(sup, start))

    def ready() -> UserApp:
        _, port = launched()
        ours = [c for c in sup.components if c.name.startswith(PREFIX)]
        return UserApp(f"{scheme}://{LOOPBACK}:{port}", ours)

    return Launch(f"{scheme}://{LOOPBACK}:{first[1]}", ready)


def _restart(
    sup: Supervisor, start: Callable[[], tuple[Component, int]]
) -> Callable[[], tuple[Component, int]]:
    """Before starting again on a new port, stop the other commands of the failed start (a
    worker started with the web server that lost its port)."""

    def again() -> tuple[Component, int]:
        for component in [c for c in sup.components if c.name.startswith(PREFIX)]:
            component.signal_group(signal.SIGKILL)
            if component.proc is not None:
                component.proc.wait()
            sup.components.remove(component)
        return start()

    return again
