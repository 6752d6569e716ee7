"""`lab verify`: the same cells through each profile's real product and through the simulated
profile, compared cell by cell.

The cells are every scenario whose proxy is the profile, with every fix that applies, polled by
the Python client. Both sides run on the matrix engine (lab/runs/matrix.py): the simulated side
as `lab matrix` runs it, the real side with each profile's product standing in for its
mitmdump (`external_proxies`). Cells are grouped by the app stack they need: a group's reverse
products forward to its app's fixed port, so a group is one app stack, one matrix per side.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.data import fixes, scenarios
from lab.data.errors import BadInput
from lab.data.scenarios import Scenario
from lab.runs.lifecycle import Progress, new_run_dir, new_supervisor
from lab.runs.matrix import MatrixResult, run_matrix
from lab.runs.shared_stacks import needs_own_stack
from lab.stacks.ports import free_port
from lab.stacks.proxy_url import check_app_port
from lab.stacks.stack import external_proxy, stack_key
from lab.verify.real import ProductFolder, RealSetup, RunningProduct, launch
from lab.verify.suite import SuiteAgreement
from lab.verify.suite import compare as compare_suite

NOT_JUDGED = "not judged"  # a cell the machine was too slow to test on that side
VERIFY_JSON = "verify.json"
CLIENT = "python"
# Cells at once on each side: the pace the real products were compared at (lab verify's
# --concurrency; the Python matrix alone runs 64).
DEFAULT_CONCURRENCY = 48


@dataclass
class CellComparison:
    profile: str
    scenario: str
    fix: str
    real: str  # the outcome through the real product, or NOT_JUDGED
    simulated: str  # through the simulated profile, or NOT_JUDGED
    expected: str  # what the scenario file says (for the reader; not compared)

    @property
    def agree(self) -> bool:
        return self.real == self.simulated != NOT_JUDGED

    @property
    def status(self) -> str:
        """agree, differs, or not judged (the machine was too slow for it on a side)."""
        if self.agree:
            return "agree"
        return NOT_JUDGED if NOT_JUDGED in (self.real, self.simulated) else "differs"

    def describe(self) -> str:
        return (
            f"{self.scenario} fix={self.fix} (profile {self.profile}): real {self.real}, "
            f"simulated {self.simulated}"
        )


@dataclass
class ProfileVerification:
    profile: str
    product: str
    version: str
    placement: str
    cells: list[CellComparison] = field(default_factory=list)

    @property
    def agreeing(self) -> int:
        return sum(1 for cell in self.cells if cell.agree)

    def summary(self) -> str:
        return (
            f"{self.profile} ({self.version}, {self.placement}): {self.agreeing} of "
            f"{len(self.cells)} cells agree"
        )


@dataclass
class VerifyResult:
    run_dir: Path
    profiles: list[ProfileVerification]
    seconds: float = 0.0
    # With --suite: the HTTP caching test suite through each real product and its profile.
    suites: list[SuiteAgreement] = field(default_factory=list)

    @property
    def cells(self) -> list[CellComparison]:
        return [cell for p in self.profiles for cell in p.cells]

    @property
    def disagreements(self) -> list[CellComparison]:
        return [cell for cell in self.cells if not cell.agree]

    @property
    def ok(self) -> bool:
        return bool(self.cells) and not self.disagreements

    def headline(self) -> str:
        cells = self.cells
        agreeing = len(cells) - len(self.disagreements)
        if len(self.profiles) == 1:
            one = self.profiles[0]
            between = f"real {one.product} and the simulated {one.profile}"
        else:
            between = f"the real products and their {len(self.profiles)} simulated profiles"
        if self.ok:
            return f"all {len(cells)} cells agree between {between}"
        return f"{len(self.disagreements)} of {len(cells)} cells differ ({agreeing} agree)"

    def to_json(self) -> dict:
        found = {
            "run_dir": str(self.run_dir),
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
            "headline": self.headline(),
            "profiles": [
                {
                    "profile": p.profile,
                    "product": p.product,
                    "version": p.version,
                    "placement": p.placement,
                    "agreeing": p.agreeing,
                    "cells": len(p.cells),
                    "comparisons": [
                        {
                            "scenario": c.scenario,
                            "fix": c.fix,
                            "real": c.real,
                            "simulated": c.simulated,
                            "expected": c.expected,
                            "agree": c.agree,
                            "status": c.status,
                        }
                        for c in p.cells
                    ],
                }
                for p in self.profiles
            ],
        }
        if self.suites:
            found["suite"] = [agreement.to_json(tests=False) for agreement in self.suites]
        return found


@dataclass
class Group:
    """Cells that share one app stack: one matrix per side."""

    key: str
    scenarios: list[Scenario]
    fixes: list[str]


def profile_scenarios(profile: str) -> list[Scenario]:
    """The scenarios whose proxy is the profile, that the Python client reproduces, over plain
    HTTP (the real products are started for plain HTTP; the HTTPS scenarios' TLS modes are
    mitmproxy's)."""
    return [
        sc
        for sc in scenarios.load_all()
        if sc.proxy == profile and sc.runs_with(CLIENT) and sc.over_plain_http
    ]


def plan(setups: list[RealSetup]) -> list[Group]:
    """The groups of cells to run; BadInput when a profile has no cell to verify, or a
    reverse product would stand in front of a cell that needs a stack of its own."""
    by_key: dict[tuple[str, tuple[str, ...]], list[Scenario]] = defaultdict(list)
    for setup in setups:
        chosen = profile_scenarios(setup.profile)
        if not chosen:
            raise BadInput(
                f"profile {setup.profile!r}: no scenario uses it (with the {CLIENT} client), "
                "so there is no cell to verify"
            )
        for sc in chosen:
            if needs_own_stack(sc) and setup.placement == "reverse":
                raise BadInput(
                    f"scenario {sc.name!r} needs a stack per cell: a reverse product "
                    f"({setup.profile}) cannot stand in front of each"
                )
            per_key: dict[str, list[str]] = defaultdict(list)
            for fix in fixes.names():
                if sc.applies(fix):
                    per_key[stack_key(sc, fix)].append(fix)
            for key, wanted in per_key.items():
                by_key[(key, tuple(wanted))].append(sc)
    return [Group(key, found, list(wanted)) for (key, wanted), found in by_key.items()]


def run_verify(
    profile_names: list[str],
    runs_root: Path,
    progress: Progress,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    suite: bool = False,
) -> VerifyResult:
    """Check every profile's [real] set-up and product first (BadInput, exit 2; a product not
    installed, exit 3), then run each group through the real products and the simulation;
    with `suite`, then the HTTP caching test suite through each product and its profile."""
    began = time.monotonic()
    setups = [RealSetup.of(name) for name in profile_names]
    groups = plan(setups)
    for setup in setups:
        setup.check_installed()
    run_dir = new_run_dir(runs_root, "verify")
    verifications = {
        s.profile: ProfileVerification(s.profile, s.product.name, "", s.placement) for s in setups
    }
    for n, group in enumerate(groups, 1):
        here = run_dir if len(groups) == 1 else run_dir / f"stack-{n}-{group.key}"
        wanted = {sc.proxy for sc in group.scenarios}
        group_setups = [s for s in setups if s.profile in wanted]
        real, versions = _run_real(group, group_setups, here, progress, concurrency)
        progress(f"the same {_cells(group)} cells through the simulated profiles")
        simulated = _run_side(group, here / "simulated", progress, concurrency)
        for profile, version in versions.items():
            verifications[profile].version = version
        _compare(group, real, simulated, verifications)
    result = VerifyResult(run_dir, list(verifications.values()))
    if suite:
        for setup in setups:
            progress(f"{setup.profile}: the HTTP caching test suite, real and simulated")
            result.suites.append(compare_suite(setup.profile, run_dir / "suite"))
    result.seconds = time.monotonic() - began
    (run_dir / VERIFY_JSON).write_text(json.dumps(result.to_json(), indent=2), "utf-8")
    return result


def _run_side(
    group: Group, run_dir: Path, progress: Progress, concurrency: int, **real_only: Any
) -> MatrixResult:
    """One side's matrix of the group's cells: the simulation, or (with the real products as
    external proxies and the app on their port) the real products."""
    return run_matrix(
        group.scenarios,
        group.fixes,
        run_dir.parent,
        progress,
        concurrency=concurrency,
        client=CLIENT,
        run_dir=run_dir,
        **real_only,
    )


def _cells(group: Group) -> int:
    return sum(1 for sc in group.scenarios for fix in group.fixes if sc.applies(fix))


def _run_real(
    group: Group,
    setups: list[RealSetup],
    here: Path,
    progress: Progress,
    concurrency: int,
) -> tuple[MatrixResult, dict[str, str]]:
    """The group's cells through the real products, each started for this matrix and
    stopped when it ends, whichever way (its own Supervisor, like the lab's children)."""
    here.mkdir(parents=True, exist_ok=True)
    app_port = 0
    if any(s.placement == "reverse" for s in setups):
        app_port = free_port()
        check_app_port(app_port)
    sup = new_supervisor(here)
    folders: list[ProductFolder] = []
    try:
        waits = []
        for setup in setups:
            folders.append(ProductFolder(here, setup.profile))
            waits.append(launch(sup, setup, app_port, folders[-1]))
        running: list[RunningProduct] = [wait() for wait in waits]
        for product in running:
            progress(f"{product.setup.profile}: {product.version} at {product.url}")
        external = {p.setup.profile: external_proxy(p.url, p.setup.placement) for p in running}
        progress(f"{_cells(group)} cells through the real products")
        real = _run_side(
            group,
            here / "real",
            progress,
            concurrency,
            app_port=app_port,
            external_proxies=external,
            also_alive=sup.check_all_alive,
        )
        return real, {p.setup.profile: p.version for p in running}
    finally:
        sup.stop_all()
        for folder in folders:
            folder.keep()


def _outcome(result: MatrixResult, scenario: str, fix: str) -> str:
    verdict = result.last[(scenario, fix)]
    return NOT_JUDGED if verdict.inconclusive else verdict.observed


def _compare(
    group: Group,
    real: MatrixResult,
    simulated: MatrixResult,
    verifications: dict[str, ProfileVerification],
) -> None:
    for sc in group.scenarios:
        for fix in group.fixes:
            if not sc.applies(fix):
                continue
            verifications[sc.proxy].cells.append(
                CellComparison(
                    profile=sc.proxy,
                    scenario=sc.name,
                    fix=fix,
                    real=_outcome(real, sc.name, fix),
                    simulated=_outcome(simulated, sc.name, fix),
                    expected=sc.expected_for(fix, CLIENT).value,
                )
            )
