"""Wall time of the whole matrix with the Python client (goal: under 30 s on 2 cores).

Runs `lab matrix --json` as a user would and reports the matrix's own `seconds` (from the start
of the stacks to the last verdict) and the whole command's time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time

GOAL = 30.0


def main() -> int:
    with tempfile.TemporaryDirectory() as runs_dir:
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "lab", "matrix", "--json", "--runs-dir", runs_dir],
            capture_output=True,
            text=True,
            timeout=600,
        )
        wall = time.monotonic() - began
    if not done.stdout.strip():
        raise SystemExit(f"lab matrix failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout)
    cells = len(result["rounds"][0]) if result.get("rounds") else 0
    print(
        f"matrix: {cells} cells, ok={result.get('ok')}, {result.get('seconds', 0):.1f} s to the "
        f"last verdict, {wall:.1f} s for the whole command (goal < {GOAL:g} s: "
        f"{'met' if result.get('seconds', 1e9) < GOAL else 'MISSED'})"
    )
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
