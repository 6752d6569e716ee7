"""The story's web UI: a page that starts a task and polls its status until a final state.

The status is served under every URL strategies.json names (path and query style, each with an
optional path nonce, GET and POST), with the response headers of the fix the task was started
with; the event stream (fix "sse") pushes the same status document on every change.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from flask import (
    Flask,
    Response,
    abort,
    g,
    jsonify,
    render_template,
    request,
    stream_with_context,
)
from werkzeug.http import http_date

from cache_probe import ProbeMiddleware
from sample_app import strategies
from sample_app.celery_app import TASK_NAME, create_celery
from sample_app.config import AppConfig
from sample_app.debug import DEBUG_ENDPOINT, DEBUG_HEADERS, DEBUG_TASK_PATH
from sample_app.events import EventLog

MAX_DURATION = 600.0
MAX_REPORT_KB = 1024
STATUS_METHODS = ["GET", "POST"]  # POST: the "post" fix polls with an empty JSON body

# Every status document carries the next number: per process, increasing, so a copy of an old
# answer (same served_at and seq) can be told from a fresh one by any client.
_seq = itertools.count(1)
_seq_lock = threading.Lock()


def next_seq() -> int:
    with _seq_lock:
        return next(_seq)


class BackendUnavailable(Exception):
    """The broker or the result backend refused or failed: the app answers 500 with why."""


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class ResultCollector:
    """Reads each result of a task nobody polls once it is ready, then forgets it.

    Fix "forget-after-read" for work nobody watches: in a real app this is where the result is
    handed on (an e-mail, a file); here it is only read.
    """

    def __init__(self, celery: Celery, backend: Any, every: float = 0.1) -> None:
        self.celery = celery
        self.backend = backend
        self.every = every
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self.collected = 0
        threading.Thread(target=self._run, name="result-collector", daemon=True).start()

    def add(self, task_id: str) -> None:
        with self._lock:
            self._pending.append(task_id)

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            with self._lock:
                pending, self._pending = self._pending, []
            still = []
            for task_id in pending:
                result = self.celery.AsyncResult(task_id, backend=self.backend)
                try:
                    if result.ready():
                        result.result  # noqa: B018 - read once (handed on, in a real app)
                        result.forget()
                        self.collected += 1
                        continue
                except Exception:  # noqa: BLE001, S112 - backend busy or gone: try again later
                    pass
                still.append(task_id)
            with self._lock:
                self._pending = still + self._pending


def status_etag(status: dict[str, Any]) -> str:
    """The status itself (task, state, result or error), never when or how often it was served."""
    key = [status["task_id"], status["state"], status.get("result"), status.get("error")]
    return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:32]


class TaskRegistry:
    """Which fix strategy each task was started with: the status endpoint answers by it."""

    def __init__(self) -> None:
        self._fix_by_task: dict[str, str] = {}
        self._lock = threading.Lock()

    def remember(self, task_id: str, fix: str) -> None:
        with self._lock:
            self._fix_by_task[task_id] = fix

    def fix_for(self, task_id: str) -> str:
        with self._lock:
            return self._fix_by_task.get(task_id, "none")


def create_app(config: AppConfig, celery: Celery | None = None) -> Flask:
    app = Flask(__name__)
    book = strategies.load()
    celery = celery or create_celery(config.celery)
    tasks = TaskRegistry()
    origin_log = EventLog(config.origin_events)
    app.extensions["celery"] = celery
    app.extensions["task_registry"] = tasks
    if config.status_url_style not in book.status_paths:
        known = ", ".join(book.status_paths)
        raise ValueError(f"status_url_style {config.status_url_style!r}: not one of {known}")

    # One result backend for every request: Celery keeps one per thread, and the server starts a
    # thread per request, so each poll would build a backend (and its connection) anew.
    results = celery.backend
    collector = ResultCollector(celery, results) if config.forget_after_read else None
    app.extensions["result_collector"] = collector

    def read_status(task_id: str) -> dict[str, Any]:
        # When the state was read, not when the answer was logged: a read just before the task
        # finished, logged just after, is not the app answering stale (the lab's judge).
        g.state_read_at = time.time()
        result = celery.AsyncResult(task_id, backend=results)
        try:
            state = result.state
        except Exception as exc:  # noqa: BLE001 - the backend's own error, shown to the UI
            raise BackendUnavailable(f"could not read the task's status: {describe(exc)}") from exc
        # served_at lets anyone spot a copy: a cached answer keeps its old timestamp.
        status: dict[str, Any] = {"task_id": task_id, "state": state, "served_at": 0.0, "seq": 0}
        if state == "SUCCESS":
            status["result"] = result.result
        elif state in book.final_states:
            status["error"] = str(result.result)
        if config.forget_after_read and state in book.final_states:
            # Read once: this answer carries the final state, the stored copy can go.
            result.forget()
        return status

    def stamp(status: dict[str, Any]) -> dict[str, Any]:
        return {**status, "served_at": time.time(), "seq": next_seq()}

    @app.get("/")
    def index() -> str:
        fix = request.args.get("fix", config.default_fix)
        if fix not in book.strategies:
            fix = config.default_fix
        page_config = {
            "pollIntervalMs": config.poll_interval_ms,
            "defaultFix": fix,
            "defaultDuration": config.default_duration,
            "statusUrlStyle": config.status_url_style,
            # The debug panel's truth about the task (debug_task below); not a status URL.
            "debugPath": DEBUG_TASK_PATH,
            "debugHeaders": DEBUG_HEADERS,
        }
        return render_template(
            "index.html",
            strategies_json=json.dumps(strategies.raw_definitions()),
            page_config_json=json.dumps(page_config),
            strategy_names=list(book.strategies),
            selected_fix=fix,
            debug_headers=DEBUG_HEADERS,
        )

    @app.post("/tasks")
    def start_task() -> tuple[Response, int]:
        body = request.get_json(silent=True) or {}
        if not isinstance(body, dict):
            abort(400, "the body must be a JSON object")
        fix = body.get("fix", config.default_fix)
        if fix not in book.strategies:
            abort(400, f"unknown fix strategy {fix!r}")
        try:
            raw_duration = body.get("duration", config.default_duration)
            if isinstance(raw_duration, bool):
                raise TypeError("a boolean is not a duration")
            duration = float(raw_duration)
        except (TypeError, ValueError):
            abort(400, "duration must be a number of seconds")
        if not 0 <= duration <= MAX_DURATION:
            abort(400, f"duration must be between 0 and {MAX_DURATION:g} seconds")
        report_kb = body.get("report_kb", 0)
        if not isinstance(report_kb, int) or isinstance(report_kb, bool):
            abort(400, "report_kb must be a whole number of KiB")
        if not 0 <= report_kb <= MAX_REPORT_KB:
            abort(400, f"report_kb must be between 0 and {MAX_REPORT_KB}")
        # watch=false: nobody will poll this task (an API client, a cron job, a user who left).
        watched = body.get("watch", True)
        if not isinstance(watched, bool):
            abort(400, "watch must be true or false")
        options: dict[str, Any] = {}
        if not watched and config.ignore_unwatched_results:
            options["ignore_result"] = True
        kwargs: dict[str, Any] = {"duration": duration, "report_kb": report_kb}
        if watched and config.document_kb:
            kwargs["document"] = "d" * (config.document_kb * 1024)
        try:
            result = celery.send_task(TASK_NAME, kwargs=kwargs, **options)
        except Exception as exc:  # noqa: BLE001 - the broker's own error, shown to the UI
            app.logger.warning("could not queue a task", exc_info=True)  # the app's log: evidence
            raise BackendUnavailable(f"could not queue the task: {describe(exc)}") from exc
        if not watched and collector is not None:
            collector.add(result.id)
        tasks.remember(result.id, fix)
        return jsonify(
            task_id=result.id,
            fix=fix,
            status_url=book.status_path_for(result.id, config.status_url_style),
            events_url=book.events_path_for(result.id),
        ), 202

    def answer_status(task_id: str) -> Response:
        g.task_id = task_id
        strategy = book.get(tasks.fix_for(task_id))
        status = read_status(task_id)
        g.state = status["state"]
        etag = status_etag(status) if strategy.etag else None
        if (
            etag is not None
            and request.method in ("GET", "HEAD")
            and request.if_none_match.contains_weak(etag)
        ):
            response = Response(status=304)
        else:
            response = jsonify(stamp(status))
        if etag is not None:
            # Weak: answers with the same status differ in served_at and seq.
            response.set_etag(etag, weak=True)
        # The app's own headers (a scenario's set-up) first, so a fix's header of the same
        # name, set below, wins.
        if config.status_cache_control is not None:
            response.headers["Cache-Control"] = config.status_cache_control
        if config.status_last_modified_age_s is not None:
            response.headers["Last-Modified"] = http_date(
                time.time() - config.status_last_modified_age_s
            )
        if strategy.last_modified_age_s is not None:
            response.headers["Last-Modified"] = http_date(
                time.time() - strategy.last_modified_age_s
            )
        for name, value in strategy.response_headers.items():
            response.headers[name] = value
        return response

    def status_view(task_id_param: str | None) -> Callable[..., Response]:
        def view(task_id: str | None = None, nonce: str | None = None) -> Response:
            if task_id_param is not None:
                task_id = request.args.get(task_id_param)
                if not task_id:
                    abort(400, f"the query parameter {task_id_param!r} names the task")
            assert task_id is not None
            return answer_status(task_id)

        return view

    # Every style is served whatever status_url_style says: old links keep working, and a
    # scenario can show what a cache does with the other one.
    for style, template in book.status_paths.items():
        rule, task_id_param = strategies.route_for(template)
        view = status_view(task_id_param)
        app.add_url_rule(rule, f"status_{style}", view, methods=STATUS_METHODS)
        app.add_url_rule(f"{rule}/<nonce>", f"status_{style}_nonce", view, methods=STATUS_METHODS)

    @app.get(strategies.route_for(book.events_path)[0])
    def task_events(task_id: str) -> Response:
        g.task_id = task_id
        path = request.path
        check_every = config.poll_interval_ms / 1000
        heartbeat_every = config.sse_heartbeat_ms / 1000

        def stream() -> Iterator[str]:
            # Open until the client leaves (a write fails: heartbeats find out) or the time is up,
            # final state or not: a notification channel, not a one-shot answer.
            now = time.monotonic()
            deadline = now + config.sse_max_seconds
            next_check, next_heartbeat = now, now + heartbeat_every
            last_etag = None
            while now < deadline:
                if now >= next_check:
                    status = read_status(task_id)
                    if status_etag(status) != last_etag:
                        last_etag = status_etag(status)
                        event = stamp(status)
                        origin_log.write(
                            "sse_event",
                            path=path,
                            task_id=task_id,
                            state=event["state"],
                            seq=event["seq"],
                        )
                        yield f"data: {json.dumps(event)}\n\n"
                    next_check = now + check_every
                if now >= next_heartbeat:
                    yield ": heartbeat\n\n"
                    next_heartbeat = now + heartbeat_every
                wake = min(next_check, next_heartbeat, deadline)
                time.sleep(max(0.0, wake - time.monotonic()))
                now = time.monotonic()

        response = Response(stream_with_context(stream()), mimetype="text/event-stream")
        for name, value in book.events_response_headers.items():
            response.headers[name] = value
        return response

    @app.post(strategies.route_for(DEBUG_TASK_PATH)[0], endpoint=DEBUG_ENDPOINT)
    def debug_task(task_id: str) -> tuple[Response, int]:
        # The page's debug panel: what the result backend really holds, asked with POST and
        # answered no-store so that no cache on the path keeps it. Not a status poll: the lab's
        # evidence leaves it out (sample_app/debug.py).
        g.task_id = task_id
        truth: dict[str, Any] = {"task_id": task_id, "checked_at": time.time()}
        code = 200
        try:
            result = celery.AsyncResult(task_id, backend=results)
            truth["state"] = result.state
            # Read only once final: then AsyncResult keeps the meta it read the state from.
            done = result.date_done if truth["state"] in book.final_states else None
        except Exception as exc:  # noqa: BLE001 - the backend's own error, shown in the panel
            truth.update(state=None, error=f"{type(exc).__name__}: {exc}")
            done, code = None, 500
        if isinstance(done, str):  # a backend that keeps it as text
            done = datetime.fromisoformat(done)
        if done is not None and done.tzinfo is None:
            done = done.replace(tzinfo=UTC)  # Celery stores UTC
        truth["date_done"] = done.isoformat() if done is not None else None
        truth["finished_ago_s"] = (
            round(truth["checked_at"] - done.timestamp(), 3) if done is not None else None
        )
        response = jsonify(truth)
        response.headers["Cache-Control"] = "no-store"
        return response, code

    @app.errorhandler(BackendUnavailable)
    def backend_unavailable(exc: BackendUnavailable) -> tuple[Response, int]:
        # JSON, not an HTML error page: the page shows it, the lab's evidence keeps it.
        return jsonify(error=str(exc)), 500

    @app.after_request
    def record(response: Response) -> Response:
        # The origin's own account of every request that reached it: the proxy cannot fake this.
        body = response.get_json(silent=True) if response.is_json else None
        body = body if isinstance(body, dict) else {}
        origin_log.write(
            "request",
            method=request.method,
            path=request.path,
            query=request.query_string.decode("latin-1"),
            # status_path, status_path_nonce, status_query, status_query_nonce, task_events...
            endpoint=request.endpoint,
            task_id=g.get("task_id") or body.get("task_id"),
            status=response.status_code,
            # A 304 has no body: the state it confirmed is the one the app read.
            state=body.get("state") or g.get("state"),
            seq=body.get("seq"),
            state_read_at=g.get("state_read_at"),
            cache_control=response.headers.get("Cache-Control"),
            **({"error": body.get("error")} if response.status_code >= 500 else {}),
        )
        return response

    # The cache probe (`lab probe http://.../_cache-probe/`): what a user's app mounts.
    app.wsgi_app = ProbeMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app
