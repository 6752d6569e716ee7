"""Run the sample app's web server: `python -m sample_app.serve [--config FILE]`.

Binds to the configured host (127.0.0.1 by default) and port (0 picks a free one), then writes the
real address to the ready file so a launcher never races for a port.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from celery import Celery
from werkzeug.serving import make_server

from sample_app.cell_prefix import CellPrefix
from sample_app.config import AppConfig
from sample_app.events import write_json_atomically
from sample_app.web import create_app


def warm_up_broker(celery: Celery) -> None:
    """Connect to the broker before saying ready.

    The first publish otherwise pays for the connection and table set-up (about 0.2 s with
    SQLite), and a broker that cannot be reached fails here, at start, not on the first click.
    """
    with celery.producer_or_acquire() as producer:
        producer.channel  # noqa: B018 - touching it opens the connection


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, help="JSON config written by the lab")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="without --config: keep the SQLite broker and results here (the web server and "
        "the worker of one app must be given the same folder)",
    )
    parser.add_argument("--port", type=int, help="override the configured port")
    args = parser.parse_args(argv)
    if args.config:
        config = AppConfig.load(args.config)
    else:
        config = AppConfig.standalone(
            args.data_dir or Path(tempfile.gettempdir()) / "proxy-cache-lab-app"
        )
    if args.port is not None:
        config.port = args.port

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Not a line per request: origin-events.jsonl has every one, with more in it, and the log
    # line cost the app a twentieth of its CPU in a matrix. Errors are still logged.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(config)
    app.wsgi_app = CellPrefix(app.wsgi_app)  # type: ignore[method-assign]
    warm_up_broker(app.extensions["celery"])
    # HTTPS when the config names a certificate: werkzeug wraps the socket with this context.
    ssl_context = (config.tls_cert, config.tls_key) if config.tls_cert else None
    server = make_server(config.host, config.port, app, threaded=True, ssl_context=ssl_context)
    host, port = server.server_address[:2]
    scheme = "https" if ssl_context else "http"
    # serve_forever only returns after shutdown(), which must come from another thread;
    # raising out of it on SIGTERM is the simple way to stop cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if config.ready_file:
        write_json_atomically(
            config.ready_file, {"host": host, "port": port, "pid": os.getpid(), "scheme": scheme}
        )
    print(f"sample app listening on {scheme}://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
