"""A module whose import waits for the file FORKSERVER_TEST_GATE names: a fork server's slow
imports, for tests/test_forkserver.py."""

import os
import time
from pathlib import Path

_gate = Path(os.environ["FORKSERVER_TEST_GATE"])
_deadline = time.monotonic() + 60
while not _gate.exists() and time.monotonic() < _deadline:
    time.sleep(0.01)  # the import is the thing that is slow here
