"""`lab matrix --dispatch URL`: the matrix's cells sent to `lab agent`s through a broker.

The coordinator starts no stack: it sends each cell as a task on the lab's own queue, in the
order and with the re-runs the local matrix uses (lab/runs/matrix.py `run_rounds`), takes each
cell's verdict once (by its cell id: a cell an agent ran twice, after a redelivery, counts once),
puts the evidence where a local run has it, and gives the same MatrixResult, so the table,
files and exit code are a local run's. A cell no agent finished within its deadline is an
error that names it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import tarfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery, states

from lab.data import settings
from lab.data.errors import ComponentError
from lab.data.scenarios import Scenario
from lab.judging.evidence import Verdict
from lab.runs.agent_protocol import (
    DEFAULT_REDELIVER_AFTER,
    QUEUE,
    TASK_NAME,
    CellMessage,
    Message,
    celery_app,
)
from lab.runs.cell import TASK_START_GRACE
from lab.runs.lifecycle import Progress, new_run_dir
from lab.runs.lost_cells import LostCells
from lab.runs.matrix import MATRIX_JSON, MatrixResult, run_rounds
from lab.runs.repro import write_json
from lab.runs.schedule import MAX_ATTEMPTS, attempt_dir
from lab.runs.shared_stacks import needs_own_stack, split_cells

RESULT_POLL_S = 0.1  # how often the results of the cells still out are read
# Beyond the cell's own longest wait: a redelivery after a lost agent, and an agent's start.
DEADLINE_SLACK_S = DEFAULT_REDELIVER_AFTER + 60.0


def cell_deadline(scenario: Scenario) -> float:
    """Seconds a cell may take from its sending to its verdict before it is an error."""
    longest = scenario.task_duration + 3 * scenario.hang_window + TASK_START_GRACE
    return longest + DEADLINE_SLACK_S


class Dispatcher:
    """Sends cells and waits for their verdicts; each cell id is counted once."""

    def __init__(
        self,
        app: Celery,
        run_dir: Path,
        progress: Progress,
        *,
        client: str = "python",
        broker: str | None = None,
        screenshots: str = "mismatches",
        evidence_dir: Path | None,
        deadline: float | None,
        stopping: threading.Event,
        command: str = "lab matrix --dispatch",
    ) -> None:
        self.app = app
        self.run_dir = run_dir
        self.progress = progress
        self.token = f"{run_dir.name}-{uuid.uuid4().hex[:6]}"
        self.client = client
        self.broker = broker
        self.screenshots = screenshots
        self.evidence_dir = evidence_dir
        self.deadline = deadline
        self.stopping = stopping
        self.command = command
        self.counted: set[str] = set()
        self.pending: set[str] = set()
        self.judged = 0
        self._lock = threading.Lock()
        # Cells out, each with the event its waiting thread sleeps on and, once set, its
        # result's meta: one thread reads them all (_watch) in one MGET per poll. A thread per
        # cell reading its own key made most of the coordinator's CPU (70 ms a cell).
        self._out: dict[str, tuple[threading.Event, dict[str, Any]]] = {}
        # Each cell out: when it was sent, and its message, to send again if it is lost.
        self._sent: dict[str, tuple[float, dict[str, Any]]] = {}
        self._done = threading.Event()
        self._watcher: threading.Thread | None = None

    def close(self) -> None:
        self._done.set()
        if self._watcher is not None:
            self._watcher.join()

    def _watch(self) -> None:
        backend = self.app.backend
        lost = LostCells(backend.client, QUEUE)
        check_every = settings.current().lost_cell_check  # for cells out at least this long
        looked_at = time.monotonic()
        while not self._done.wait(RESULT_POLL_S):
            with self._lock:
                ids = list(self._out)
            if not ids:
                continue
            if time.monotonic() - looked_at > check_every:
                looked_at = time.monotonic()
                self._send_again(lost.look(self._out_since(looked_at - check_every)))
            values = backend.mget([backend.get_key_for_task(cell_id) for cell_id in ids])
            for cell_id, value in zip(ids, values, strict=True):
                if value is None:
                    continue
                meta = backend.decode_result(value)
                if meta.get("status") not in states.READY_STATES:
                    continue
                with self._lock:
                    event, slot = self._out.pop(cell_id, (None, {}))
                if event is not None:
                    slot.update(meta)
                    event.set()

    def run(self, sc: Scenario, fix: str, round_no: int, attempt: int, cell_dir: Path) -> Verdict:
        message = CellMessage(
            run=self.token,
            scenario=sc.name,
            fix=fix,
            round=round_no,
            attempt=attempt,
            client=self.client,  # type: ignore[arg-type]
            broker=self.broker,  # type: ignore[arg-type]
            screenshots=self.screenshots,  # type: ignore[arg-type]
            evidence_dir=str(self.evidence_dir) if self.evidence_dir else None,
        )
        allowed = self.deadline or cell_deadline(sc) * (MAX_ATTEMPTS if needs_own_stack(sc) else 1)
        payload = self.ask(message, allowed)
        with self._lock:
            self.judged += 1
            judged = self.judged
        verdict = Verdict.from_json(payload["verdict"])
        take_evidence(payload.get("evidence") or {}, cell_dir)
        verdict.run_dir = str(cell_dir)
        write_json(cell_dir / "result.json", verdict.to_json())
        self.progress(
            f"{judged} cells judged: {sc.name} fix={fix} {verdict.observed} "
            f"(round {round_no}, run {attempt}, by {payload.get('agent')})"
        )
        return verdict

    def _out_since(self, before: float) -> list[str]:
        """The cells sent before `before` that are still out."""
        with self._lock:
            return [cell for cell in self._out if self._sent.get(cell, (before, None))[0] < before]

    def _send_again(self, lost: list[str]) -> None:
        for cell_id in lost:
            with self._lock:
                if cell_id not in self._out or cell_id not in self._sent:
                    continue  # its result came meanwhile
                body = self._sent[cell_id][1]
            self.progress(
                f"cell {cell_id}: its message is in no queue and with no agent (an agent died "
                "as it took it): sent again"
            )
            self.app.send_task(TASK_NAME, args=[body], task_id=cell_id, queue=QUEUE)

    def ask(self, message: Message, allowed: float) -> dict[str, Any]:
        """Send one message and wait for its result (a ComponentError naming it after `allowed`
        seconds); each cell id is counted once."""
        cell_id = message.cell_id
        body = message.model_dump()
        # The task id is the cell id: a redelivered cell keeps it, and its result one key.
        with self._lock:
            self.pending.add(cell_id)
            self._sent[cell_id] = (time.monotonic(), body)
        self.app.send_task(TASK_NAME, args=[body], task_id=cell_id, queue=QUEUE)
        payload = self._wait(cell_id, allowed)
        with self._lock:
            self.pending.discard(cell_id)
            self._sent.pop(cell_id, None)
            if cell_id in self.counted:  # never: one waiter per cell id; kept as a guard
                raise RuntimeError(f"cell {cell_id} came back twice")
            self.counted.add(cell_id)
        return payload

    def _wait(self, cell_id: str, allowed: float) -> dict[str, Any]:
        backend = self.app.backend
        event, meta = threading.Event(), {}
        with self._lock:
            self._out[cell_id] = (event, meta)
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, daemon=True)
                self._watcher.start()
        give_up = time.monotonic() + allowed
        try:
            while not event.wait(RESULT_POLL_S):
                if self.stopping.is_set():
                    raise DispatchStopped(cell_id)
                if time.monotonic() > give_up:
                    status = backend.get_task_meta(cell_id).get("status")
                    raise ComponentError(
                        self.command,
                        f"cell {cell_id}: no agent finished it within {allowed:.0f} s "
                        f"({'picked up' if status == states.STARTED else 'never picked up'}; "
                        f"are agents serving queue {QUEUE} on this broker?)",
                    )
        finally:
            with self._lock:
                self._out.pop(cell_id, None)
        backend.forget(cell_id)
        if meta.get("status") == states.SUCCESS:
            return meta["result"]
        raise ComponentError("lab agent", f"cell {cell_id}: {meta.get('result')}")

    def revoke_pending(self) -> None:
        """Cells still queued when the coordinator gives up: no agent runs them for nothing."""
        with self._lock:
            pending = sorted(self.pending)
        if pending:
            try:
                self.app.control.revoke(pending)
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                self.progress(f"could not revoke {len(pending)} queued cells: {exc}")


class DispatchStopped(Exception):
    """A waiting cell gives up: the matrix was interrupted or another cell failed."""


def take_evidence(evidence: dict[str, Any], cell_dir: Path) -> None:
    """The cell's folder where a local run keeps it; the paths in its result files mended."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    if "tar_gz" in evidence:
        data = base64.b64decode(evidence["tar_gz"])
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(cell_dir, filter="data")
    elif "dir" in evidence:
        shutil.copytree(evidence["dir"], cell_dir, dirs_exist_ok=True)
        shutil.rmtree(evidence["dir"], ignore_errors=True)
        for parent in Path(evidence["dir"]).parents[:2]:  # the delivery's and the run's folders
            with contextlib.suppress(OSError):
                parent.rmdir()  # only when empty: another cell's may still be there
    elif "kept_at" in evidence:
        (cell_dir / "evidence-elsewhere.txt").write_text(
            f"too big to send back ({evidence.get('bytes')} bytes): {evidence['kept_at']}\n"
        )
    mend_results(cell_dir)


def mend_results(folder: Path) -> None:
    """Every result.json under `folder` names its own folder as its run_dir."""
    # An own-stack cell's result files (a lab repro run, attempt-N/ inside) name the agent's
    # folders: the pages are drawn here.
    for result_file in folder.rglob("result.json"):
        data = json.loads(result_file.read_text("utf-8"))
        if "run_dir" in data:
            data["run_dir"] = str(result_file.parent)
            write_json(result_file, data)


def connect(dispatch_url: str) -> Celery:
    """The lab's Celery app on the broker, once it answers (ComponentError, exit 3, if not)."""
    app = celery_app(dispatch_url)
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - kombu raises the transport's own errors
        app.close()
        raise ComponentError("dispatch broker", f"{dispatch_url}: {exc}") from None
    return app


def run_dispatched_matrix(
    scenarios: list[Scenario],
    fixes: list[str],
    runs_root: Path,
    progress: Progress,
    *,
    dispatch_url: str,
    evidence_dir: Path | None = None,
    deadline: float | None = None,
    repeat: int = 1,
    concurrency: int = 48,
    client: str = "python",
    broker: str | None = None,
    screenshots: str = "mismatches",
    run_dir: Path | None = None,
) -> MatrixResult:
    """`run_matrix`'s result, the cells run by agents. concurrency: cells in flight at once
    (every agent's threads together)."""
    began = time.monotonic()
    scenarios = [
        sc for sc in scenarios if sc.runs_with(client) and (broker is None or sc.runs_on(broker))
    ]
    app = connect(dispatch_url)
    run_dir = run_dir or new_run_dir(runs_root, "matrix")
    run_dir.mkdir(parents=True, exist_ok=True)
    cells, own, shared = split_cells(scenarios, fixes)
    result = MatrixResult(
        run_dir, [sc.name for sc in scenarios], fixes, client=client, broker=broker
    )
    stopping = threading.Event()
    dispatcher = Dispatcher(
        app,
        run_dir,
        progress,
        client=client,
        broker=broker,
        screenshots=screenshots,
        evidence_dir=evidence_dir,
        deadline=deadline,
        stopping=stopping,
    )
    progress(f"sending {len(cells)} cells x {repeat} to the agents on {dispatch_url}")

    def one(i: int, attempt: int, round_no: int) -> Verdict:
        sc, fix = shared[i]
        cell_dir = attempt_dir(run_dir / f"round-{round_no}" / f"{sc.name}--{fix}", attempt)
        return dispatcher.run(sc, fix, round_no, attempt, cell_dir)

    def own_stack(cell: tuple[Scenario, str], round_no: int) -> Verdict:
        sc, fix = cell
        return dispatcher.run(
            sc, fix, round_no, 1, run_dir / f"round-{round_no}" / f"{sc.name}--{fix}"
        )

    try:
        run_rounds(
            result, cells, shared, own, one, own_stack, repeat, concurrency, stopping, progress
        )
    except BaseException:
        stopping.set()
        dispatcher.revoke_pending()
        raise
    finally:
        dispatcher.close()
        app.close()
    result.seconds = time.monotonic() - began
    write_json(run_dir / MATRIX_JSON, result.to_json())
    return result


def rebase_json(folder: Path, agent_dir: str, here: Path) -> None:
    """The agent's folder named in the JSON files of its evidence replaced by where they now
    are (matrix.json's cell folders, a unit's own audit.json or verify.json)."""
    if not agent_dir or agent_dir == str(here):
        return
    for found in folder.rglob("*.json"):
        text = found.read_text("utf-8")
        if agent_dir in text:
            found.write_text(text.replace(agent_dir, str(here)), "utf-8")
