"""The brokers and clients a scenario can name (lab/stacks/brokers.py reaches or starts the
brokers; lab/clients/ holds the clients)."""

from typing import Literal, get_args

BrokerKind = Literal["sqlite", "redis", "rabbitmq"]
BROKERS: tuple[str, ...] = get_args(BrokerKind)
ClientKind = Literal["python", "browser"]
CLIENTS: tuple[str, ...] = get_args(ClientKind)

# Cells of a matrix running at once (and the worker threads of its shared stacks), per client:
# here, not in lab.runs.matrix, so `lab matrix --help` shows it without importing the run
# modules. The Python client's round is bound by how many cells run at once and how fast they
# start, not by CPU, up to 64 (2 cores: 48 at 25 starts a second took 25.2 s a round, 64 at 40
# took 21.5 s, with nothing left to judge again, also with both cores kept busy); a browser
# cell is a page, and the browser matrix keeps the pace it was measured at.
MATRIX_CONCURRENCY: dict[str, int] = {"python": 64, "browser": 48}
DEFAULT_MATRIX_CONCURRENCY = MATRIX_CONCURRENCY["python"]
