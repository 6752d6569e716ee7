"""`lab verify --dispatch URL`: each profile's verification run by a `lab agent`.

The unit of work is one profile: its real side, its simulated side and, with --suite, its suite
comparison, i.e. `run_verify([profile])` on the agent (lab/verify/run.py). The message names
the profile and whether the suite runs; the agent rejects a profile it does not have, or whose
real product is not installed on its host (one line; it keeps serving). The coordinator checks
the profiles and plans the cells as a local run does (bad input, exit 2, before anything is
sent), then merges the per-profile results into a local run's VerifyResult: the same
verify.json, table and exit code. Each profile's folder comes back as a `lab verify PROFILE`
run's: with one profile it is the run folder itself, as locally; with several, one folder per
profile (a local run of several profiles groups their cells by app stack instead).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from lab.data.errors import BadInput, ComponentError
from lab.runs.agent_protocol import Failed, Rejected, VerifyMessage, one_line
from lab.runs.dispatch import DEADLINE_SLACK_S, rebase_json, take_evidence
from lab.runs.dispatch_units import ask_each, coordinating
from lab.runs.lifecycle import Progress
from lab.verify import cache_tests
from lab.verify.run import (
    VERIFY_JSON,
    CellComparison,
    ProfileVerification,
    VerifyResult,
    plan,
    run_verify,
)
from lab.verify.suite import SuiteAgreement

log = logging.getLogger("lab.agent")
# One profile's cells on both sides (under a minute on a quiet 2-core host), and the suite's
# two runs of about a minute each, with room for a loaded host.
VERIFY_DEADLINE_S = 900.0
SUITE_DEADLINE_S = 600.0


# --- on the agent ----------------------------------------------------------------------------


def check_verify(message: VerifyMessage) -> None:
    """Rejected (one line) for a profile this agent does not have, one without a [real]
    table, or whose real product is not installed here."""
    from lab.data import profiles
    from lab.verify.real import RealSetup

    if message.profile not in profiles.names():
        raise Rejected(f"profile {message.profile!r}: this agent does not have it")
    try:
        setup = RealSetup.of(message.profile)
        setup.check_installed()
    except (BadInput, ComponentError) as exc:
        raise Rejected(f"profile {message.profile!r}: {one_line(exc)}") from None


def serve_verify(message: VerifyMessage, folder: Path) -> tuple[dict[str, Any], Path]:
    """The profile verified here, in a run folder under `folder`: (the result for the
    coordinator, the run folder to hand over). Failed (one line) if the run ended in error."""
    check_verify(message)

    def say(line: str) -> None:
        log.info("verify %s: %s", message.profile, line)

    try:
        result = run_verify(
            [message.profile],
            folder,
            say,
            concurrency=message.concurrency,
            suite=message.suite,
        )
    except (BadInput, ComponentError) as exc:
        raise Failed(f"lab verify {message.profile}: {one_line(exc)}") from None
    found = result.to_json()
    found["suite"] = [agreement.to_json(tests=True) for agreement in result.suites]
    return found, result.run_dir


# --- on the coordinator ----------------------------------------------------------------------


def run_dispatched_verify(
    profile_names: list[str],
    runs_root: Path,
    progress: Progress,
    *,
    dispatch_url: str,
    evidence_dir: Path | None = None,
    deadline: float | None = None,
    concurrency: int = 48,
    suite: bool = False,
) -> VerifyResult:
    """`run_verify`'s result, each profile verified by an agent."""
    from lab.verify.real import RealSetup

    began = time.monotonic()
    setups = [RealSetup.of(name) for name in profile_names]  # bad input: exit 2, as locally
    order = _local_order(plan(setups))
    with coordinating(
        dispatch_url,
        runs_root,
        "verify",
        progress,
        evidence_dir=evidence_dir,
        deadline=deadline,
        command="lab verify --dispatch",
    ) as dispatcher:
        run_dir = dispatcher.run_dir
        allowed = (
            deadline or VERIFY_DEADLINE_S + (SUITE_DEADLINE_S if suite else 0) + DEADLINE_SLACK_S
        )
        progress(f"sending {len(setups)} profile verifications to the agents on {dispatch_url}")

        def one(profile: str) -> tuple[ProfileVerification, SuiteAgreement | None]:
            message = VerifyMessage(
                kind="verify",
                run=dispatcher.token,
                profile=profile,
                suite=suite,
                concurrency=concurrency,
                evidence_dir=str(evidence_dir) if evidence_dir else None,
            )
            payload = dispatcher.ask(message, allowed)
            here = run_dir if len(setups) == 1 else run_dir / profile
            take_evidence(payload.get("evidence") or {}, here)
            rebase_json(here, payload.get("agent_dir", ""), here)
            found = payload["verify"]
            verification = _verification(found["profiles"][0], order)
            suites = [_suite(doc) for doc in found.get("suite", [])]
            progress(f"{verification.summary()} (by {payload.get('agent')})")
            return verification, suites[0] if suites else None

        done = ask_each(dispatcher, [setup.profile for setup in setups], one)
    result = VerifyResult(run_dir, [verification for verification, _ in done])
    result.suites = [agreement for _, agreement in done if agreement is not None]
    result.seconds = time.monotonic() - began
    (run_dir / VERIFY_JSON).write_text(json.dumps(result.to_json(), indent=2), "utf-8")
    return result


def _local_order(groups: list[Any]) -> dict[tuple[str, str], int]:
    """Each cell's place in a local run's comparisons (group by group, as `_compare` goes)."""
    cells = [
        (sc.name, fix)
        for group in groups
        for sc in group.scenarios
        for fix in group.fixes
        if sc.applies(fix)
    ]
    return {cell: n for n, cell in enumerate(cells)}


def _verification(doc: dict[str, Any], order: dict[tuple[str, str], int]) -> ProfileVerification:
    verification = ProfileVerification(
        doc["profile"], doc["product"], doc["version"], doc["placement"]
    )
    cells = [
        CellComparison(
            doc["profile"], c["scenario"], c["fix"], c["real"], c["simulated"], c["expected"]
        )
        for c in doc["comparisons"]
    ]
    verification.cells = sorted(
        cells, key=lambda cell: order.get((cell.scenario, cell.fix), len(order))
    )
    return verification


def _suite(doc: dict[str, Any]) -> SuiteAgreement:
    return SuiteAgreement(
        str(doc["profile"]),
        str(doc["product"]),
        _suite_results(doc["real"]),
        _suite_results(doc["simulated"]),
    )


def _suite_results(doc: dict[str, Any]) -> cache_tests.SuiteResults:
    """SuiteResults from its to_json()."""
    return cache_tests.SuiteResults(
        base_url=doc["base_url"],
        version=str(doc["suite"]).removeprefix(f"{cache_tests.SUITE_PACKAGE} "),
        tests=tuple(cache_tests.TestResult(**test) for test in doc["tests"]),
        seconds=float(doc["seconds"]),
    )
