"""`lab agent`: a Celery worker of the lab's own that runs matrix cells on its host (and, as
asked with --serve, profile verifications and audits of its own flow files: `handle_job`).

It starts the matrix's shared stacks for every cell it has (its scenarios x every fix, for its
client and broker) once, keeps them warm, and runs each cell it is sent on them exactly as
`lab matrix` does (lab/runs/warm_stacks.py), judged on the spot. What goes back: the verdict
JSON, and the cell's evidence folder (its own slice of the shared evidence files included, so
the coordinator's report draws it as a local run's) in the result when small, or in the shared
folder the coordinator names. A message it cannot run is rejected with a one-line reason in
its log, and the agent keeps serving.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import shutil
import signal
import socket
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.data.errors import ComponentError
from lab.data.scenarios import Scenario
from lab.judging.evidence import Verdict
from lab.runs import repro
from lab.runs.agent_protocol import (
    CellMessage,
    Failed,
    Message,
    Rejected,
    check_against_own_data,
    parse,
)
from lab.runs.cell import CellRun
from lab.runs.lifecycle import Progress, RunResources
from lab.runs.repro import write_json
from lab.runs.schedule import MAX_ATTEMPTS
from lab.runs.shared_stacks import needs_own_stack, split_cells
from lab.runs.warm_stacks import AliveCheck, WarmStacks, warm_stacks
from lab.stacks.brokers import BrokerChoice

log = logging.getLogger("lab.agent")
# A verification's or an audit's runner: (message, a folder of its own) -> (the result for the
# coordinator, the run folder to hand over); Rejected or Failed with a one-line reason.
Job = Callable[[Any, Path], tuple[dict[str, Any], Path]]
# Evidence folders up to this size (gzip'd tar) come back in the result; bigger ones need a
# shared --evidence-dir (a report with screenshots is about 100 kB).
INLINE_EVIDENCE_LIMIT = 4 * 1024 * 1024


class Agent:
    """The warm stacks of one host and the cells run on them."""

    def __init__(
        self,
        scenarios: list[Scenario],
        fixes: list[str],
        run_dir: Path,
        *,
        client: str = "python",
        broker: str | None = None,
        concurrency: int = 8,
        serves: frozenset[str] = frozenset({"cell"}),
        jobs: dict[str, Job] | None = None,
    ) -> None:
        self.serves = serves  # message kinds: cell, verify, audit
        # What runs a verify or audit message (lab/verify/dispatch.py, lab/runs/dispatch_audit.py),
        # given by `lab agent`: the layers above this one (verify, reports) are its to wire.
        self.jobs = jobs or {}
        self.scenarios = {sc.name: sc for sc in scenarios}
        self.fixes = fixes
        self.run_dir = run_dir
        self.client = client
        self.broker = broker
        self.concurrency = concurrency
        self.name = f"lab-agent-{os.getpid()}@{socket.gethostname()}"
        self.stacks: WarmStacks | None = None
        self.check_alive: AliveCheck | None = None

    def warm(self, resources: RunResources, progress: Progress) -> None:
        """Start the stacks of every shared cell this agent has; return once they are up."""
        cells, _, shared = split_cells(self.scenarios.values(), self.fixes)
        self.stacks = warm_stacks(
            resources,
            shared,
            progress,
            client=self.client,
            broker=self.broker,
            broker_url=None,
            concurrency=self.concurrency,
            https=any(sc.tls for sc, _ in cells),
        )
        browser = self.stacks.browser
        self.check_alive = AliveCheck(
            resources, "in lab agent", [browser.check_alive] if browser else []
        )
        progress(
            f"{len(self.stacks.apps)} app stacks and "
            f"{len(set(map(id, self.stacks.proxies.values())))} proxies warm for "
            f"{len(cells)} cells of {len(self.scenarios)} scenarios"
        )

    def handle(self, body: Any) -> dict[str, Any]:
        """One message: checked (Rejected), run, judged; the result the coordinator reads."""
        message = parse(body)
        if message.kind not in self.serves:
            raise Rejected(
                f"kind {message.kind!r}: this agent does not serve it (it serves "
                f"{', '.join(sorted(self.serves))}; lab agent --serve)"
            )
        if not isinstance(message, CellMessage):
            return self.handle_job(message)
        scenario = check_against_own_data(message, set(self.scenarios), self.client, self.broker)
        assert self.stacks is not None and self.check_alive is not None, "warm() first"
        delivery = uuid.uuid4().hex[:10]  # a redelivered cell never meets its own cache keys
        cell_dir = (
            self.run_dir / "cells" / message.run / delivery / f"{scenario.name}--{message.fix}"
        )
        log.info("cell %s: running (%s)", message.cell_id, delivery)
        if needs_own_stack(scenario):
            verdict = repro.run_until_tested(
                scenario,
                message.fix,
                self.run_dir,
                lambda _message: None,
                attempts=MAX_ATTEMPTS,
                run_dir=cell_dir,
                client=self.client,
                broker=_own_broker(scenario, self.broker),
                should_stop=self.check_alive.stopping.is_set,
                screenshots=message.screenshots,
            )
        else:
            run, verdict = self.stacks.run_shared(
                scenario,
                message.fix,
                cell_dir,
                f"/_lab/{delivery}-r{message.round}a{message.attempt}-{scenario.name}--{message.fix}",
                self.check_alive,
                attempt=message.attempt,
                screenshots=message.screenshots,
            )
            self._write_evidence_slice(run, verdict, cell_dir)
            write_json(cell_dir / "result.json", verdict.to_json())
        log.info("cell %s: %s (expected %s)", message.cell_id, verdict.observed, verdict.expected)
        return {
            "cell": message.cell_id,
            "agent": self.name,
            "verdict": verdict.to_json(),
            "evidence": hand_over(cell_dir, message.evidence_dir, message.run, delivery),
        }

    def handle_job(self, message: Message) -> dict[str, Any]:
        """A profile's verification or audit, run here from start to end (its own stacks, not
        the warm ones); Rejected or Failed with a one-line reason."""
        delivery = uuid.uuid4().hex[:10]
        folder = self.run_dir / message.kind / message.run / delivery
        log.info("%s %s: running (%s)", message.kind, message.cell_id, delivery)
        job = self.jobs.get(message.kind)
        if job is None:
            raise Rejected(f"kind {message.kind!r}: this agent does not serve it")
        found, run_dir = job(message, folder)
        log.info("%s %s: %s", message.kind, message.cell_id, found.get("headline"))
        return {
            "cell": message.cell_id,
            "agent": self.name,
            message.kind: found,
            "agent_dir": str(run_dir),
            "evidence": hand_over(run_dir, message.evidence_dir, message.run, delivery),
        }

    def _write_evidence_slice(self, run: CellRun, verdict: Verdict, cell_dir: Path) -> None:
        """This cell's lines of the stacks' shared evidence files, in its own folder: the
        report the coordinator draws reads them there, as a `lab repro` run's."""
        assert self.stacks is not None
        task_id = verdict.task.get("id")
        if not task_id:
            return
        readers = self.stacks.readers
        origin = readers.origin(run.app.origin_events).get(task_id, [])
        proxy = readers.proxy(run.proxy.events if run.proxy else None).get(task_id, [])
        tasks = run.app.task_events
        worker: list[dict[str, Any]] = [{"event": "worker_ready"}]
        if (started := tasks.started.get(task_id)) is not None:
            worker.append({"event": "task_started", "task_id": task_id, "time": started})
        if (finished := tasks.finished.get(task_id)) is not None:
            state = tasks.final_state.get(task_id)
            worker.append(
                {"event": "task_finished", "task_id": task_id, "time": finished, "state": state}
            )
        for name, events in (
            ("origin-events.jsonl", origin),
            ("proxy-events.jsonl", proxy),
            ("task-events.jsonl", worker),
        ):
            if events:
                text = "".join(json.dumps(event) + "\n" for event in events)
                (cell_dir / name).write_text(text, "utf-8")


def _own_broker(scenario: Scenario, forced: str | None) -> BrokerChoice:
    return BrokerChoice(forced or scenario.default_broker, None)


def hand_over(cell_dir: Path, evidence_dir: str | None, run: str, delivery: str) -> dict[str, Any]:
    """The evidence folder for the coordinator: copied into the shared folder it named, or
    packed into the result when small enough; else left here, and said where."""
    if evidence_dir:
        place = Path(evidence_dir) / run / delivery / cell_dir.name
        shutil.copytree(cell_dir, place)
        return {"dir": str(place)}
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        tar.add(cell_dir, arcname=".")
    if packed.tell() > INLINE_EVIDENCE_LIMIT:
        return {"kept_at": f"{socket.gethostname()}:{cell_dir}", "bytes": packed.tell()}
    return {"tar_gz": base64.b64encode(packed.getvalue()).decode("ascii")}


def serve(agent: Agent, broker_url: str, redeliver_after: float, progress: Progress) -> None:
    """Consume cells from the lab's queue until SIGTERM or Ctrl-C (a warm shutdown: cells
    running finish first). A component that dies ends the agent with it (ComponentError)."""
    from celery.signals import worker_ready

    from lab.runs.agent_protocol import QUEUE, TASK_NAME, celery_app

    app = celery_app(broker_url, redeliver_after)
    died: list[ComponentError] = []

    @app.task(name=TASK_NAME, throws=(CellRejected,))
    def run_cell_task(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            if kwargs or len(args) != 1:
                raise Rejected(f"a cell message is one JSON object, got {len(args)} arguments")
            return agent.handle(args[0])
        except Rejected as exc:
            log.warning("rejected a cell message: %s", exc)
            raise CellRejected(f"{agent.name}: {exc}") from None
        except Failed as exc:
            log.warning("failed: %s", exc)
            raise CellRejected(f"{agent.name}: {exc}") from None
        except ComponentError as exc:
            died.append(exc)
            log.error("agent stopping: %s", exc)
            os.kill(os.getpid(), signal.SIGTERM)  # the stacks are broken: serve no more cells
            raise CellRejected(f"{agent.name}: {exc}") from None

    @worker_ready.connect
    def ready(**_kwargs: Any) -> None:
        progress(f"agent ready: {agent.name} serving queue {QUEUE}")

    worker = app.Worker(
        pool="threads",
        concurrency=agent.concurrency,
        queues=[QUEUE],
        hostname=agent.name,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        loglevel="WARNING",
        quiet=True,
    )
    try:
        worker.start()
    finally:
        if agent.check_alive is not None:
            agent.check_alive.stopping.set()
    if died:
        raise died[0]


class CellRejected(Exception):
    """What the coordinator reads for a cell an agent would not or could not run."""
