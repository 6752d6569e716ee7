"""The story's web UI: a page that starts a task and polls its status until a final state."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from celery import Celery
from flask import Flask, Response, abort, jsonify, render_template, request

from sample_app import strategies
from sample_app.celery_app import TASK_NAME, create_celery
from sample_app.config import AppConfig
from sample_app.events import EventLog

MAX_DURATION = 600.0


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

    @app.get("/")
    def index() -> str:
        fix = request.args.get("fix", config.default_fix)
        if fix not in book.strategies:
            fix = config.default_fix
        page_config = {
            "pollIntervalMs": config.poll_interval_ms,
            "defaultFix": fix,
            "defaultDuration": config.default_duration,
        }
        return render_template(
            "index.html",
            strategies_json=json.dumps(strategies.raw_definitions()),
            page_config_json=json.dumps(page_config),
            strategy_names=list(book.strategies),
            selected_fix=fix,
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
        result = celery.send_task(TASK_NAME, kwargs={"duration": duration})
        tasks.remember(result.id, fix)
        return jsonify(task_id=result.id, fix=fix, status_url=book.status_path_for(result.id)), 202

    @app.get("/tasks/<task_id>/status")
    def task_status(task_id: str) -> Response:
        result = celery.AsyncResult(task_id)
        state = result.state
        # served_at lets anyone spot a copy: a cached answer keeps its old timestamp.
        payload: dict[str, Any] = {"task_id": task_id, "state": state, "served_at": time.time()}
        if state == "SUCCESS":
            payload["result"] = result.result
        elif state in book.final_states:
            payload["error"] = str(result.result)
        response = jsonify(payload)
        for name, value in book.get(tasks.fix_for(task_id)).response_headers.items():
            response.headers[name] = value
        return response

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
            task_id=(request.view_args or {}).get("task_id") or body.get("task_id"),
            status=response.status_code,
            state=body.get("state"),
            cache_control=response.headers.get("Cache-Control"),
        )
        return response

    return app
