"""Starting the parts a run needs: an app stack (worker + app server) and proxies in front of it.

`lab repro` starts one of each; `lab matrix` shares one app stack per app/worker set-up and one
proxy per profile among many concurrent clients.
"""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.data import profiles, settings
from lab.data.events import EventLog
from lab.data.scenarios import AppSetup, LoadSetup, ResultsSetup, Scenario, WorkerSetup
from lab.stacks.brokers import BrokerRuntime, queue_name
from lab.stacks.ports import LOOPBACK
from lab.stacks.processes import Component, Supervisor, log_tail, read_ready_file
from lab.stacks.proxy_url import proxy_label
from lab.stacks.tls import RunTls
from sample_app import result_fixes
from sample_app.config import AppConfig


def mitmdump_executable() -> str:
    """`lab-mitmdump` (proxies/lab_mitmdump.py: mitmdump less the addons a run leaves idle)
    beside Python or on PATH, else mitmdump itself; LAB_MITMDUMP names one to use instead."""
    if override := settings.current().mitmdump:
        return override
    for name in ("lab-mitmdump", "mitmdump"):
        beside_python = Path(sys.executable).parent / name
        if beside_python.exists():
            return str(beside_python)
        if found := shutil.which(name):
            return found
    return "mitmdump"


class BackendReader:
    """Reads what the result backend holds, directly: not through the app or the proxy.

    Built while the stack starts, so the verdict does not wait for Celery's backend imports.
    """

    def __init__(self, config: AppConfig) -> None:
        from sample_app.celery_app import create_celery

        self.celery = create_celery(config.celery)
        # One backend for every cell thread (Celery keeps one per thread); building it now
        # does the slow imports while the stack starts.
        self.backend = self.celery.backend
        self._lock = threading.Lock()

    def state(self, task_id: str | None) -> str | None:
        if task_id is None:
            return None
        try:
            with self._lock:
                return self.celery.AsyncResult(task_id, backend=self.backend).state
        except Exception as exc:  # noqa: BLE001 - evidence, not control flow
            return f"unreadable ({type(exc).__name__}: {exc})"

    def close(self) -> None:
        self.celery.close()


@dataclass
class AppStack:
    """A worker (or none) and an app server, with their evidence files."""

    key: str
    setup: AppSetup
    worker: WorkerSetup
    url: str
    config: AppConfig
    backend: BackendReader
    task_events: EventLog  # the worker's own record (task-events.jsonl), read as it grows
    origin_events: Path
    worker_proc: Component | None = None
    broker: str = "sqlite"
    tls: RunTls | None = None  # the app serves HTTPS with the run's certificates

    def worker_exit(self) -> str | None:
        """How the worker ended during the run, when the scenario allows it to (may_exit)."""
        proc = self.worker_proc
        if proc is None or proc.proc is None or proc.proc.poll() is None:
            return None
        critical = [
            line for line in log_tail(proc.log_path, 200).splitlines() if "CRITICAL" in line
        ]
        why = f": {critical[-1].split('] ', 1)[-1]}" if critical else ""
        return f"the worker exited with code {proc.proc.returncode} during the run{why}"


@dataclass
class ProxyEndpoint:
    key: str
    profile: str
    mode: str
    address: str  # http://127.0.0.1:PORT (https:// for a reverse proxy's TLS edge)
    events: Path | None  # None for an external proxy: the lab cannot see inside it
    tls: str | None = None  # the scenario's TLS mode the proxy runs in (tunnel/inspect/edge)

    def client_route(self, app_url: str) -> tuple[str, str | None]:
        """(base URL the client requests, forward proxy URL or None)."""
        if self.mode == "reverse":
            return self.address, None
        return app_url, self.address


def app_key(setup: AppSetup, worker: WorkerSetup) -> str:
    parts = [setup.status_url_style]
    if setup.ignore_result:
        parts.append("ignore-result")
    if not worker.running:
        parts.append("no-worker")
    if worker.task_never_finishes:
        parts.append("never-finishes")
    # The app's own status headers: an app that sends them must not serve another scenario's
    # cells. The key names files (app-<key>.log), so the value is spelled with [a-z0-9-] only.
    if setup.status_cache_control is not None:
        spelled = "".join(c if c.isalnum() else "-" for c in setup.status_cache_control.lower())
        parts.append(f"cc-{spelled}")
    if setup.status_last_modified_age_s is not None:
        parts.append(f"lm-{setup.status_last_modified_age_s:g}".replace(".", "-"))
    return "-".join(parts)


def stack_key(scenario: Scenario, fix: str) -> str:
    """app_key, plus what a result backend fix or the scenario's [results] change: stacks
    that differ in them cannot be shared; and HTTPS (every TLS mode shares one HTTPS app)."""
    parts = [app_key(scenario.app, scenario.worker)]
    if scenario.tls is not None:
        parts.append("https")
    if scenario.results.expires_s is not None:
        parts.append(f"expires-{scenario.results.expires_s:g}".replace(".", "-"))
    if result_fixes.get(fix) is not None:
        parts.append(fix)
    return "-".join(parts)


def launch_app_stack(
    sup: Supervisor,
    key: str,
    setup: AppSetup,
    worker: WorkerSetup,
    *,
    poll_interval: float,
    task_duration: float,
    concurrency: int = 1,
    single: bool = True,
    broker: BrokerRuntime | None = None,
    results: ResultsSetup | None = None,
    fix: str | None = None,
    load: LoadSetup | None = None,
    port: int = 0,
    tls: RunTls | None = None,
) -> Callable[[], AppStack]:
    """Start the processes; return a function that waits for them and gives the AppStack.

    `port`: the app server's port on 127.0.0.1 (0: any free one, read from its ready file),
    fixed when a real reverse proxy must be pointed at it.

    `broker`: where messages and results go (default: SQLite files in the run folder);
    `fix`: a result backend fix (sample_app/result_fixes.py) changes the stack's set-up;
    `tls`: the app serves HTTPS with the run's certificate for 127.0.0.1.
    """
    run_dir = sup.run_dir
    suffix = "" if single else f"-{key}"
    data_dir = run_dir if single else run_dir / f"data{suffix}"
    data_dir.mkdir(parents=True, exist_ok=True)
    broker = broker or BrokerRuntime("sqlite", None)
    celery_conf = broker.celery_config(data_dir, queue_name(sup.run_id, key))
    if setup.ignore_result:
        celery_conf["task_ignore_result"] = True
    if results is not None and results.expires_s is not None:
        celery_conf["result_expires"] = results.expires_s
    result_fix = result_fixes.get(fix) if fix else None
    if result_fix is not None:
        celery_conf.update(result_fix.celery)
    config = AppConfig(
        celery=celery_conf,
        poll_interval_ms=round(poll_interval * 1000),
        default_duration=task_duration,
        host=LOOPBACK,
        port=port,
        origin_events=str(run_dir / f"origin-events{suffix}.jsonl"),
        task_events=str(run_dir / f"task-events{suffix}.jsonl"),
        ready_file=str(run_dir / f"app{suffix}.ready.json"),
        status_url_style=setup.status_url_style,
        status_cache_control=setup.status_cache_control,
        status_last_modified_age_s=setup.status_last_modified_age_s,
        **(result_fix.app_flags() if result_fix else {}),
        document_kb=load.page_document_kb if load is not None else 0,
        tls_cert=str(tls.app_cert) if tls else None,
        tls_key=str(tls.app_key) if tls else None,
    )
    config_path = run_dir / f"app-config{suffix}.json"
    config.dump(config_path)
    python = sys.executable
    worker_proc = None
    if worker.running:
        worker_proc = sup.add(
            f"worker{suffix}",
            [
                python,
                "-m",
                "sample_app.worker",
                "--config",
                str(config_path),
                f"--concurrency={concurrency}",
            ],
        )
    app_proc = sup.add(
        f"app{suffix}", [python, "-m", "sample_app.serve", "--config", str(config_path)]
    )
    events = EventLog(tasks=[Path(config.task_events)])

    def ready() -> AppStack:
        backend = BackendReader(config)  # meanwhile the children start
        ready_file = Path(config.ready_file or "")
        sup.wait_until(app_proc, lambda: read_ready_file(ready_file) is not None, "its ready file")
        port = (read_ready_file(ready_file) or {})["port"]
        if worker_proc is not None:
            sup.wait_until(
                worker_proc,
                lambda: events.refresh(0) or events.worker_ready,
                "its worker_ready signal",
            )
            # Only once it is up: a worker that cannot start is the lab's failure, always.
            worker_proc.may_exit = worker.may_exit
        return AppStack(
            key=key,
            setup=setup,
            worker=worker,
            url=f"{'https' if tls else 'http'}://{LOOPBACK}:{port}",
            config=config,
            backend=backend,
            task_events=events,
            origin_events=Path(config.origin_events or ""),
            worker_proc=worker_proc,
            broker=broker.kind,
            tls=tls,
        )

    return ready


# The app sees the Host its client asked for, as behind a real reverse proxy configured to
# pass it on (nginx's proxy_set_header Host, Varnish's default).
KEEP_HOST_HEADER = "keep_host_header=true"


def reverse_settings(app_url: str) -> list[str]:
    """mitmdump's `--set` values for a reverse-mode profile in front of the app at app_url:
    `launch_proxy` passes them at start, a warm spare (lab/stacks/spare.py) when claimed."""
    return [f"mode=reverse:{app_url}", KEEP_HOST_HEADER]


def launch_proxy(
    sup: Supervisor,
    key: str,
    profile: profiles.Profile,
    app_url: str | None,
    *,
    single: bool,
    listen_host: str = LOOPBACK,
    modes: list[str] | None = None,
    extra_args: list[str] | None = None,
    tls_mode: str | None = None,
    tls: RunTls | None = None,
) -> Callable[[], ProxyEndpoint]:
    """Start mitmdump with the profile; return a function that waits and gives the endpoint.

    A reverse-mode profile needs the app's URL; a forward proxy can start before the app.
    `tls_mode` with the run's `tls`: the scenario's TLS mode (tls_args).
    """
    run_dir = sup.run_dir
    suffix = "" if single else f"-{key}"
    events = run_dir / f"proxy-events{suffix}.jsonl"
    ready_file = run_dir / f"proxy{suffix}.ready.json"
    mode_args: list[str] = ["--listen-port", "0"]
    if modes:
        # Several listeners in one process (lab up: reverse and forward), sharing one cache.
        mode_args = [arg for mode in modes for arg in ("--mode", mode)]
        mode_args += ["--set", KEEP_HOST_HEADER]
    elif profile.mode == "reverse":
        assert app_url is not None
        mode_args += [arg for spec in reverse_settings(app_url) for arg in ("--set", spec)]
    import proxies.lab_addons as addons_script

    proc = sup.add(
        f"proxy{suffix}",
        [
            mitmdump_executable(),
            "--listen-host",
            listen_host,
            "-s",
            addons_script.__file__,
            "--set",
            f"observer_events={events}",
            "--set",
            f"observer_ready={ready_file}",
            # The cache's background refreshes (stale-while-revalidate, stale-while-updating)
            # run side by side, as Varnish's and nginx's do, not one after another.
            "--set",
            "client_replay_concurrency=-1",
            *mode_args,
            *profiles.mitmdump_args(profile),
            *(tls_args(tls_mode, tls, f"proxy{suffix}") if tls_mode else []),
            *(extra_args or []),
        ],
    )

    def ready() -> ProxyEndpoint:
        sup.wait_until(proc, lambda: read_ready_file(ready_file) is not None, "its ready file")
        port = (read_ready_file(ready_file) or {})["port"]
        scheme = "https" if tls_mode == "edge" else "http"
        address = f"{scheme}://{LOOPBACK}:{port}"
        return ProxyEndpoint(key, profile.name, profile.mode, address, events, tls_mode)

    return ready


def tls_args(
    mode: str, tls: RunTls | None, name: str, *, upstream_ca: Path | None = None
) -> list[str]:
    """mitmproxy's own options for a TLS mode, one mitmdump per mode (they are the process's).

    tunnel: `ignore_hosts` matches every host, so a CONNECT is passed through as bytes (what a
    forward proxy without TLS inspection does); inspect: the gateway CA is the `confdir`'s
    mitmproxy-ca.pem, so mitmproxy makes each host's certificate from it; edge: `certs` serves
    the origin CA's certificate for 127.0.0.1. The two that terminate TLS verify the app's
    certificate with the origin CA (`ssl_verify_upstream_trusted_ca`), as a real gateway or
    CDN verifies the origin (`upstream_ca`: another app's CA, for `lab audit`). A confdir of
    the run's own in every case: mitmproxy would otherwise make its CA in ~/.mitmproxy.
    """
    assert tls is not None, "a TLS mode needs the run's certificates"
    confdir = tls.folder / name
    upstream = ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca or tls.origin_ca}"]
    if mode == "tunnel":
        return ["--set", "ignore_hosts=.*", "--set", f"confdir={confdir}"]
    if mode == "inspect":
        return ["--set", f"confdir={tls.gateway_confdir}", *upstream]
    return ["--set", f"certs=*={tls.edge_pem}", "--set", f"confdir={confdir}", *upstream]


def external_proxy(url: str, mode: str) -> ProxyEndpoint:
    """A proxy the lab did not start: it sees no events from inside it, and names it by URL."""
    return ProxyEndpoint("external", proxy_label(url), mode, url.rstrip("/"), None)
