"""The brokers and clients a scenario can name (lab/stacks/brokers.py reaches or starts the
brokers; lab/clients/ holds the clients)."""

from typing import Literal, get_args

BrokerKind = Literal["sqlite", "redis", "rabbitmq"]
BROKERS: tuple[str, ...] = get_args(BrokerKind)
ClientKind = Literal["python", "browser"]
CLIENTS: tuple[str, ...] = get_args(ClientKind)

# Cells of a matrix running at once (and the worker threads of its shared stacks): here, not in
# lab.runs.matrix, so `lab matrix --help` shows it without importing the run modules.
DEFAULT_MATRIX_CONCURRENCY = 48
