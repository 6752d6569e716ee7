"""One run: scenario -> processes -> client -> evidence -> verdict -> run folder."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lab import profiles
from lab.client import PollingClient
from lab.errors import ComponentError
from lab.evidence import Evidence, Verdict, judge, task_finished_at
from lab.processes import Supervisor, read_ready_file
from lab.scenarios import Outcome, Scenario
from sample_app import strategies
from sample_app.config import AppConfig, sqlite_celery_config

LOOPBACK = "127.0.0.1"
TASK_START_GRACE = 5.0  # how long past duration + hang window a task may take to be picked up
Progress = Callable[[str], None]


@dataclass
class Stack:
    app_url: str
    proxy_url: str | None  # forward proxy address, when the profile is a forward proxy
    client_base_url: str  # where the client sends its requests
    app_config: AppConfig
    backend: BackendReader


def mitmdump_executable() -> str:
    if override := os.environ.get("LAB_MITMDUMP"):
        return override
    beside_python = Path(sys.executable).parent / "mitmdump"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("mitmdump") or "mitmdump"


def new_run_dir(root: Path, scenario: str, fix: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-{scenario}-{fix}"
    for n in range(1, 1000):
        path = root / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"too many runs named {stem} in {root}")


def start_stack(sup: Supervisor, scenario: Scenario, progress: Progress) -> Stack:
    run_dir = sup.run_dir
    config = AppConfig(
        celery=sqlite_celery_config(run_dir),
        poll_interval_ms=round(scenario.poll_interval * 1000),
        default_duration=scenario.task_duration,
        host=LOOPBACK,
        port=0,
        origin_events=str(run_dir / "origin-events.jsonl"),
        task_events=str(run_dir / "task-events.jsonl"),
        ready_file=str(run_dir / "app.ready.json"),
    )
    config_path = run_dir / "app-config.json"
    config.dump(config_path)
    python = sys.executable
    profile = profiles.load(scenario.proxy) if scenario.uses_proxy else None

    progress("starting worker, app server" + (f" and proxy ({profile.name})" if profile else ""))
    worker = sup.add("worker", [python, "-m", "sample_app.worker", "--config", str(config_path)])
    app = sup.add("app", [python, "-m", "sample_app.serve", "--config", str(config_path)])
    proxy = None

    def start_proxy(mode_args: list[str]) -> None:
        nonlocal proxy
        assert profile is not None
        import proxies.lab_addons as addons_script

        proxy = sup.add(
            "proxy",
            [
                mitmdump_executable(),
                "--listen-host",
                LOOPBACK,
                "--listen-port",
                "0",
                "-s",
                addons_script.__file__,
                "--set",
                f"observer_events={run_dir / 'proxy-events.jsonl'}",
                "--set",
                f"observer_ready={run_dir / 'proxy.ready.json'}",
                *mode_args,
                *profiles.mitmdump_args(profile),
            ],
        )

    if profile and profile.mode == "forward":
        start_proxy([])
    backend_reader = BackendReader(config)  # meanwhile the children start
    app_ready = run_dir / "app.ready.json"
    sup.wait_until(app, lambda: read_ready_file(app_ready) is not None, "its ready file")
    app_info = read_ready_file(app_ready) or {}
    app_url = f"http://{LOOPBACK}:{app_info['port']}"
    if profile and profile.mode == "reverse":
        start_proxy(["--mode", f"reverse:{app_url}", "--set", "keep_host_header=true"])
    events = run_dir / "task-events.jsonl"
    sup.wait_until(worker, lambda: _worker_ready(events), "its worker_ready signal")
    if proxy is None:
        return Stack(app_url, None, app_url, config, backend_reader)
    proxy_ready = run_dir / "proxy.ready.json"
    sup.wait_until(proxy, lambda: read_ready_file(proxy_ready) is not None, "its ready file")
    proxy_address = f"http://{LOOPBACK}:{(read_ready_file(proxy_ready) or {})['port']}"
    if profile and profile.mode == "reverse":
        return Stack(app_url, None, proxy_address, config, backend_reader)
    return Stack(app_url, proxy_address, app_url, config, backend_reader)


def _worker_ready(events: Path) -> bool:
    try:
        return '"worker_ready"' in events.read_text("utf-8")
    except FileNotFoundError:
        return False


def wait_for_outcome(
    sup: Supervisor, client: PollingClient, scenario: Scenario, events: Path
) -> Outcome:
    give_up_after = scenario.task_duration + scenario.hang_window + TASK_START_GRACE
    while True:
        sup.check_all_alive("during the run")
        if client.done:
            return Outcome(client.ui_state)
        now = time.time()
        finished = task_finished_at(events, client.task_id)
        if finished is not None and now - finished >= scenario.hang_window:
            return Outcome.hung
        if finished is None and client.started_at and now - client.started_at > give_up_after:
            return Outcome.hung
        time.sleep(0.02)


class BackendReader:
    """Reads what the result backend holds, directly: not through the app or the proxy.

    Built while the stack starts, so the verdict does not wait for Celery's backend imports.
    """

    def __init__(self, config: AppConfig) -> None:
        from sample_app.celery_app import create_celery

        self.celery = create_celery(config.celery)
        self.celery.backend  # noqa: B018 - instantiating it does the slow imports now

    def state(self, task_id: str | None) -> str | None:
        if task_id is None:
            return None
        try:
            return self.celery.AsyncResult(task_id).state
        except Exception as exc:  # noqa: BLE001 - evidence, not control flow
            return f"unreadable ({type(exc).__name__}: {exc})"

    def close(self) -> None:
        self.celery.close()


def run(scenario: Scenario, fix: str, runs_root: Path, progress: Progress) -> Verdict:
    book = strategies.load()
    strategy = book.get(fix)
    began = time.monotonic()
    run_dir = new_run_dir(runs_root, scenario.name, fix)
    sup = Supervisor(run_id=f"{run_dir.name}-{uuid.uuid4().hex[:6]}", run_dir=run_dir)
    client: PollingClient | None = None
    try:
        stack = start_stack(sup, scenario, progress)
        progress(f"all up after {time.monotonic() - began:.1f} s; starting a task (fix={fix})")
        client = PollingClient(
            base_url=stack.client_base_url,
            proxy_url=stack.proxy_url,
            book=book,
            strategy=strategy,
            poll_interval=scenario.poll_interval,
            task_duration=scenario.task_duration,
            log_path=run_dir / "client.jsonl",
        )
        client.start()
        observed = wait_for_outcome(sup, client, scenario, run_dir / "task-events.jsonl")
        seconds = time.monotonic() - began
        client.stop()
        backend_state = stack.backend.state(client.task_id)
        stack.backend.close()
        evidence = Evidence.gather(
            run_dir=run_dir,
            task_id=client.task_id,
            client_started_at=client.started_at,
            backend_state=backend_state,
            polls=list(client.polls),
            client_error=client.error,
            ui_state=client.ui_state,
            uses_proxy=scenario.uses_proxy,
        )
        verdict = judge(
            scenario, fix, observed, evidence, seconds=seconds, final_states=book.final_states
        )
        verdict.run_dir = str(run_dir)
        _write_result(run_dir, verdict.to_json())
        return verdict
    except ComponentError as exc:
        _write_result(run_dir, {"scenario": scenario.name, "fix": fix, "error": str(exc)})
        exc.run_dir = str(run_dir)  # type: ignore[attr-defined]
        raise
    finally:
        if client is not None:
            client.stop()
        sup.stop_all()


def _write_result(run_dir: Path, data: dict[str, object]) -> None:
    (run_dir / "result.json").write_text(json.dumps(data, indent=2), "utf-8")
