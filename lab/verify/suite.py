"""The HTTP caching test suite (lab/verify/cache_tests.py) through a profile's real product and
through the simulated profile, compared test by test: `lab verify PROFILE --suite` and
bench/cache_tests.py --real.

The suite needs a reverse proxy (Node's fetch ignores HTTP_PROXY). A profile placed in reverse
(the nginx ones) runs its own template, as `lab verify` does. A forward one (the Squid ones)
runs its template with its one listening line turned into Squid's accelerator set-up (the
lines of the suite's own docker/squid/squid.conf): the caching lines, refresh_pattern
included, stay the profile's. The product is started by lab/verify/real.py, the one way the
lab starts a real product; the simulated profile by lab/stacks/stack.py's launch_proxy, in
reverse mode whatever mode the profile names.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from lab.data import profiles
from lab.data.errors import BadInput
from lab.runs.lifecycle import RunResources, new_run_dir
from lab.stacks.processes import Supervisor
from lab.stacks.stack import launch_proxy
from lab.verify import cache_tests
from lab.verify.real import ProductFolder, RealSetup, launch

# squid.conf.documented: http_port ... accel, cache_peer ... originserver.
SQUID_ACCEL = """\
http_port $app_host:$listen_port accel defaultsite=$app_host:$listen_port no-vhost
cache_peer $app_host parent $app_port 0 no-query no-digest originserver name=origin
cache_peer_access origin allow all"""
SQUID_LISTEN = re.compile(r"^http_port \S+$", re.M)
# The share of required tests with the same result that issue 13 asks of a product profile.
GOAL_PERCENT = 90.0


def reverse_setup(profile: str, folder: Path) -> RealSetup:
    """The profile's real set-up, placed as a reverse proxy (its template rewritten in
    `folder` when it is a forward one)."""
    setup = RealSetup.of(profile)
    setup.check_installed()
    if setup.placement == "reverse":
        return setup
    if setup.product.name != "squid":
        raise BadInput(f"profile {profile!r}: no reverse set-up for {setup.product.name} yet")
    text, found = SQUID_LISTEN.subn(SQUID_ACCEL, setup.template.read_text("utf-8"))
    if found != 1:
        raise BadInput(f"{setup.template}: expected one `http_port` line to turn into accel")
    template = folder / f"{profile}-accel.conf"
    template.write_text(text, "utf-8")
    return dataclasses.replace(setup, template=template, placement="reverse")


def start_real(profile: str, sup: Supervisor, origin_port: int) -> tuple[str, str]:
    """The profile's real product in front of 127.0.0.1:origin_port: (its URL, its version)."""
    setup = reverse_setup(profile, sup.run_dir)
    running = launch(sup, setup, origin_port, ProductFolder(sup.run_dir, profile))()
    return running.url, running.version


def run_profile(name: str, runs_dir: Path) -> cache_tests.SuiteResults:
    """The suite through the lab's proxy with profile `name`, reverse mode."""
    profile = profiles.load(name).model_copy(update={"mode": "reverse"})
    with RunResources(new_run_dir(runs_dir, f"cache-tests-{name}")) as resources:
        origin = cache_tests.start_origin(resources.sup)
        endpoint = launch_proxy(resources.sup, "proxy", profile, origin, single=True)()
        return cache_tests.run_suite(endpoint.address, resources.sup)


def run_real(name: str, runs_dir: Path) -> tuple[str, cache_tests.SuiteResults]:
    """The suite through the real product of profile `name`, in front of the suite's origin:
    (the product's version, the results)."""
    with RunResources(new_run_dir(runs_dir, f"cache-tests-real-{name}")) as resources:
        origin = cache_tests.start_origin(resources.sup)
        port = int(origin.rsplit(":", 1)[1])
        address, version = start_real(name, resources.sup, port)
        return version, cache_tests.run_suite(address, resources.sup)


def said(test: cache_tests.TestResult) -> str:
    """A test's result with the suite's reason, if it gave one."""
    return f"{test.result} ({test.reason})" if test.reason else test.result


def score(results: cache_tests.SuiteResults) -> str:
    passed, evaluated = len(results.required_passed), len(results.required_evaluated)
    percent = 100 * passed / evaluated if evaluated else 0.0
    return f"required {passed} passed of {evaluated} evaluated ({percent:.1f}%)"


@dataclass
class SuiteAgreement:
    """One profile's required tests through its real product and through the simulation."""

    profile: str
    product: str  # the product's version line
    real: cache_tests.SuiteResults
    simulated: cache_tests.SuiteResults

    @property
    def pairs(self) -> list[tuple[cache_tests.TestResult, cache_tests.TestResult]]:
        """(real, simulated) for every required test the real product ran."""
        theirs = self.simulated.by_id()
        return [(test, theirs[test.id]) for test in self.real.of_kind("required")]

    @property
    def same(self) -> list[str]:
        return [a.id for a, b in self.pairs if a.result == b.result]

    @property
    def differ(self) -> list[tuple[cache_tests.TestResult, cache_tests.TestResult]]:
        return [(a, b) for a, b in self.pairs if a.result != b.result]

    @property
    def percent(self) -> float:
        total = len(self.pairs)
        return 100 * len(self.same) / total if total else 0.0

    def summary(self) -> str:
        same, total = len(self.same), len(self.pairs)
        lines = [
            f"{self.product} (reverse): {score(self.real)}",
            f"profile {self.profile} (reverse): {score(self.simulated)}",
            f"same result on {same} of {total} required tests ({self.percent:.1f}%; "
            f"goal {GOAL_PERCENT:.0f}%)",
        ]
        differ = self.differ
        if differ:
            lines.append(f"different ({len(differ)}): test: real / {self.profile}")
        lines += [f"  {a.id}: {said(a)} / {said(b)}" for a, b in differ]
        return "\n".join(lines)

    def to_json(self, *, tests: bool = True) -> dict[str, object]:
        """The figures; with `tests`, every test's result on both sides too."""
        doc: dict[str, object] = {
            "product": self.product,
            "profile": self.profile,
            "same": len(self.same),
            "required": len(self.pairs),
            "percent": round(self.percent, 1),
            "goal_percent": GOAL_PERCENT,
            "different": [
                {"id": a.id, "real": said(a), "simulated": said(b)} for a, b in self.differ
            ],
        }
        if tests:
            doc["real"] = self.real.to_json()
            doc["simulated"] = self.simulated.to_json()
        return doc


def compare(name: str, runs_dir: Path) -> SuiteAgreement:
    """The suite through profile `name`'s real product, then through the profile."""
    version, real = run_real(name, runs_dir)
    return SuiteAgreement(name, version, real, run_profile(name, runs_dir))
