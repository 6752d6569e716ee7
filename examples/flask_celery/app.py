"""A Flask app that hands slow work to Celery, written the way Flask's own Celery pattern shows
(https://flask.palletsprojects.com/en/stable/patterns/celery/): `celery_init_app`, a task class
that runs in the app context, Celery configured from `app.config["CELERY"]`, `POST /add` and
`GET /result/<id>`.

The story's bug is the default: the status answer carries no caching headers, so a proxy that
gives heuristic freshness to a 200 answer keeps serving the first "not ready" one. The fix is
one setting, `STATUS_CACHE_CONTROL = "no-store"` (config key or environment variable).

Settings (config keys, each read from the environment variable of the same name when the
config passed to `create_app` does not give it):

- `CELERY_BROKER_URL`, `CELERY_RESULT_BACKEND`: where Celery sends tasks and keeps results
  (say `redis://127.0.0.1:6379/0`). Unset: kombu's `filesystem://` transport and Celery's
  `file://` result backend in folders under `EXAMPLE_DATA_DIR`, so nothing else has to run.
- `EXAMPLE_DATA_DIR`: that folder; needed when either URL above is unset.
- `STATUS_CACHE_CONTROL`: the `Cache-Control` value of the status answer; unset or empty: none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from celery import Celery, Task
from flask import Flask, Response, current_app, jsonify, request

from cache_probe import ProbeMiddleware
from examples.flask_celery import tasks

SETTINGS = (
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "EXAMPLE_DATA_DIR",
    "STATUS_CACHE_CONTROL",
)
MAX_SECONDS = 60.0
KEPT_IN_FILES = {"CELERY_BROKER_URL": "its task queue", "CELERY_RESULT_BACKEND": "its results"}
# kombu's filesystem transport finds new messages by listing its folder, by default once a
# second: measured from POST /add to a ready 0-second task, a median of 964 ms at 1 s, 65 ms at
# 0.1 s, at about 0.2% of a core for the idle worker's listings.
FILESYSTEM_POLLING_INTERVAL_S = 0.1


class ConfigError(Exception):
    """A setting is missing or wrong; the message names it and says what to do."""


def celery_init_app(app: Flask) -> Celery:
    """Flask's pattern: a Celery app whose tasks run inside this Flask app's context."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    # The pattern makes it the default app so that `@shared_task` tasks and `AsyncResult` use it.
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The Flask app, its Celery app in `app.extensions["celery"]`. `config` wins over the
    environment; a `CELERY` mapping in it is laid over the derived Celery settings."""
    given = dict(config or {})
    settings = {name: given.get(name, os.environ.get(name) or None) for name in SETTINGS}
    app = Flask(__name__)
    app.config.from_mapping(settings)
    app.config.from_mapping({k: v for k, v in given.items() if k != "CELERY"})
    app.config["CELERY"] = {**celery_settings(settings), **given.get("CELERY", {})}
    celery_init_app(app)
    add_routes(app)
    # The cache probe (`lab probe http://.../_cache-probe/`): one line, answers only its path.
    app.wsgi_app = ProbeMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


def celery_settings(settings: Mapping[str, str | None]) -> dict[str, Any]:
    broker_url = settings["CELERY_BROKER_URL"]
    result_backend = settings["CELERY_RESULT_BACKEND"]
    conf: dict[str, Any] = {
        "broker_url": broker_url,
        "result_backend": result_backend,
        # Flask's pattern: results are not stored unless a task asks (`ignore_result=False`).
        "task_ignore_result": True,
        "broker_connection_retry_on_startup": True,
    }
    if broker_url and result_backend:
        return conf
    data_dir = _data_dir(settings)
    if not broker_url:
        folders = {name: data_dir / "broker" / name for name in ("queue", "control")}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        conf["broker_url"] = "filesystem://"
        # kombu's filesystem transport, but a message file appears whole (atomic_filesystem.py).
        conf["broker_transport"] = "examples.flask_celery.atomic_filesystem:Transport"
        conf["broker_transport_options"] = {
            # One folder in and out: the web app writes messages where the worker reads them.
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            # Exchange tables (the workers' remote control uses one); kombu's default is a
            # "control" folder in the current directory.
            "control_folder": str(folders["control"]),
            "polling_interval": FILESYSTEM_POLLING_INTERVAL_S,
        }
    if not result_backend:
        results = data_dir / "results"
        results.mkdir(parents=True, exist_ok=True)
        conf["result_backend"] = f"file://{results}"
    return conf


def _data_dir(settings: Mapping[str, str | None]) -> Path:
    value = settings["EXAMPLE_DATA_DIR"]
    if not value:
        missing = [n for n in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND") if not settings[n]]
        raise ConfigError(
            f"EXAMPLE_DATA_DIR is not set: without {' and '.join(missing)} the example keeps "
            f"{' and '.join(KEPT_IN_FILES[name] for name in missing)} in files there; set it to "
            f"a folder, or set {' and '.join(missing)}"
        )
    return Path(value).resolve()


def add_routes(app: Flask) -> None:
    @app.get("/")
    def index() -> dict[str, object]:
        return {"start": "POST /add", "status": "GET /result/<id>"}

    @app.post("/add")
    def start_add() -> Response | tuple[Response, int]:
        body = request.get_json(silent=True)
        fields = body if isinstance(body, dict) else request.form
        try:
            a = _number(fields, "a", 0, int)
            b = _number(fields, "b", 0, int)
            seconds = _number(fields, "seconds", 1.0, float)
        except ValueError as exc:
            return jsonify(error=str(exc)), 400
        if not 0 <= seconds <= MAX_SECONDS:
            return jsonify(error=f"seconds: {seconds} is not between 0 and {MAX_SECONDS:g}"), 400
        result = tasks.add_together.delay(a, b, seconds)
        return jsonify(result_id=result.id)

    @app.get("/result/<id>")
    # The page's half of the fix: a fresh last segment on each poll, a URL no cache has seen.
    @app.get("/result/<id>/<nonce>")
    def task_result(id: str, nonce: str = "") -> Response:
        result = current_app.extensions["celery"].AsyncResult(id)
        ready = result.ready()
        answer = jsonify(
            ready=ready,
            successful=result.successful(),
            # Not the pattern's `result.get()`: that raises a failed task's exception here.
            value=result.result if ready and result.successful() else None,
        )
        if current_app.config["STATUS_CACHE_CONTROL"]:
            answer.headers["Cache-Control"] = current_app.config["STATUS_CACHE_CONTROL"]
        return answer


def _number(fields: Mapping[str, Any], name: str, default: float, kind: type) -> Any:
    value = fields.get(name, default)
    if isinstance(value, bool):  # JSON true is not a number here, although bool is an int
        raise ValueError(f"{name}: {value!r} is not a number")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {value!r} is not a number") from None
    if kind is int and isinstance(value, float) and value != number:
        raise ValueError(f"{name}: {value!r} is not a whole number")
    return number
