"""The HTTP caching test suite (http-tests/cache-tests, npm package `http-cache-tests`) run
against a cache on loopback, and counted with the suite's own result logic.

The suite is installed once, with npm at a pinned version, into a folder outside the
repository (`suite_dir()`: `$XDG_CACHE_HOME/proxy-cache-lab/http-cache-tests-VERSION`, by default
`~/.cache/...`). Its origin server is started bound to 127.0.0.1 (`start_origin`); the cache under
test stands in front of it as a reverse proxy (Node 20's fetch ignores HTTP_PROXY, so the suite's
forward mode would not go through a proxy); `run_suite(base_url, sup)` runs the suite's CLI
against the cache and counts its results with the suite's own `determineTestResult`
(lib/display.mjs, dependencies honoured) in a small Node script beside this module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.data.errors import ComponentError
from lab.stacks.processes import Supervisor

SUITE_PACKAGE = "http-cache-tests"
SUITE_VERSION = "0.4.5"
NODE_SCRIPTS = Path(__file__).parent / "cache_tests_node"
# The CLI prints its JSON after about 60 s here; its last tests pause for up to 30 s each.
RUN_TIMEOUT = 300.0
INSTALL_TIMEOUT = 300.0
LISTENING = re.compile(r"Listening on http://127\.0\.0\.1:(\d+)/")
# The suite's categories (lib/display.mjs resultTypes) that say a test was judged.
JUDGED = frozenset({"pass", "fail", "optional_fail", "yes", "no"})


def suite_dir() -> Path:
    """Where the suite is installed: outside git, one folder per pinned version."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "proxy-cache-lab" / f"{SUITE_PACKAGE}-{SUITE_VERSION}"


def package_dir() -> Path:
    return suite_dir() / "node_modules" / SUITE_PACKAGE


def _executable(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        why = f"needs `{name}` (Node.js 20 or newer) on PATH: apt-get install nodejs npm"
        raise ComponentError(SUITE_PACKAGE, why)
    return found


def install() -> Path:
    """The suite's package folder, installed with npm on first use (into a temporary folder
    first and then moved in place, so an interrupted install leaves nothing half-done)."""
    package = package_dir()
    if (package / "cli.mjs").exists():
        return package
    npm = _executable("npm")
    target = suite_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".installing-") as tmp:
        (Path(tmp) / "package.json").write_text('{"private": true}\n', "utf-8")
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", f"{SUITE_PACKAGE}@{SUITE_VERSION}"],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise ComponentError(SUITE_PACKAGE, "npm install failed", "\n".join(tail))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        os.makedirs(tmp)  # TemporaryDirectory removes it on the way out
    return package


def start_origin(sup: Supervisor) -> str:
    """The suite's origin server on 127.0.0.1 (a port the system picks); its URL."""
    package = install()
    proc = sup.add(
        "cache-tests-origin",
        [_executable("node"), str(NODE_SCRIPTS / "origin.mjs"), str(package)],
        extra_env={
            "npm_config_protocol": "http",
            "npm_config_port": "0",
            "npm_config_pidfile": str(sup.run_dir / "cache-tests-origin.pid"),
        },
        cwd=package,
    )
    port: list[int] = []

    def listening() -> bool:
        found = LISTENING.search(proc.log_path.read_text("utf-8", "replace"))
        if found:
            port.append(int(found.group(1)))
        return bool(found)

    sup.wait_until(proc, listening, "its 'Listening on' line")
    return f"http://127.0.0.1:{port[0]}"


@dataclass(frozen=True)
class TestResult:
    id: str
    suite: str
    name: str
    kind: str  # required, optimal (optional) or check (informational)
    result: str  # the suite's category: pass, fail, optional_fail, yes, no, setup_fail, ...
    reason: str | None  # the suite's own words for a failure

    @property
    def required(self) -> bool:
        return self.kind == "required"


@dataclass(frozen=True)
class SuiteResults:
    base_url: str
    version: str
    tests: tuple[TestResult, ...]
    seconds: float

    def of_kind(self, kind: str) -> list[TestResult]:
        return [t for t in self.tests if t.kind == kind]

    @property
    def required_evaluated(self) -> list[TestResult]:
        """Required tests the suite judged (passed or failed); not those it could not run
        (harness or setup failure) or whose dependency failed."""
        return [t for t in self.of_kind("required") if t.result in JUDGED]

    @property
    def required_passed(self) -> list[TestResult]:
        return [t for t in self.required_evaluated if t.result == "pass"]

    @property
    def required_failed(self) -> list[TestResult]:
        return [t for t in self.required_evaluated if t.result != "pass"]

    def counts(self, kind: str) -> dict[str, int]:
        found: dict[str, int] = {}
        for test in self.of_kind(kind):
            found[test.result] = found.get(test.result, 0) + 1
        return found

    def by_id(self) -> dict[str, TestResult]:
        return {t.id: t for t in self.tests}

    def to_json(self) -> dict[str, object]:
        evaluated, passed = len(self.required_evaluated), len(self.required_passed)
        return {
            "suite": f"{SUITE_PACKAGE} {self.version}",
            "base_url": self.base_url,
            "seconds": round(self.seconds, 1),
            "required": {
                "passed": passed,
                "evaluated": evaluated,
                "percent": round(100 * passed / evaluated, 1) if evaluated else None,
                "by_result": self.counts("required"),
            },
            "optional": self.counts("optimal"),
            "check": self.counts("check"),
            "tests": [asdict(t) for t in self.tests],
        }


def _cli_json(log: Path) -> dict[str, object] | None:
    """The CLI's results once it has printed them whole: a JSON object from a line "{"."""
    text = log.read_text("utf-8", "replace")
    start = text.find("{\n")
    if start < 0:
        return None
    try:
        found = json.loads(text[start:])
    except json.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


def run_suite(base_url: str, sup: Supervisor, *, timeout: float = RUN_TIMEOUT) -> SuiteResults:
    """Run the suite's CLI against the cache at `base_url` (a reverse proxy in front of
    `start_origin`'s server) and count its results. The CLI is stopped as soon as its JSON is
    complete: it may stay alive for minutes on open connections."""
    package = install()
    node = _executable("node")
    began = time.monotonic()
    cli = sup.add(
        "cache-tests-cli",
        # The suite's CLI, its client retrying once a request a reused connection lost before
        # any answer (cache_tests_node/cli.mjs says why).
        [node, "--no-warnings", str(NODE_SCRIPTS / "cli.mjs"), str(package)],
        # As `npm run cli` sets them (cli.mjs reads npm_config_X, else npm_package_config_X):
        # an empty id runs every test.
        extra_env={
            "npm_config_base": base_url.rstrip("/"),
            "npm_config_id": "",
            "npm_package_config_id": "",
        },
        cwd=package,
    )
    raw: dict[str, dict[str, object] | None] = {"results": None}

    def printed() -> bool:
        raw["results"] = _cli_json(cli.log_path)
        if raw["results"] is None and cli.proc is not None and cli.proc.poll() is not None:
            raise cli.fail(f"exited with code {cli.proc.returncode} before printing its results")
        return raw["results"] is not None

    try:
        sup.wait_until(cli, printed, "its results", timeout=timeout)
    finally:
        cli.signal_group(signal.SIGTERM)
        if cli.proc is not None:
            try:
                cli.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                cli.signal_group(signal.SIGKILL)
                cli.proc.wait()
    seconds = time.monotonic() - began
    (sup.run_dir / "cache-tests-results.json").write_text(json.dumps(raw["results"]), "utf-8")
    return SuiteResults(base_url, SUITE_VERSION, count(raw["results"] or {}), seconds)


def count(results: dict[str, object]) -> tuple[TestResult, ...]:
    """Every test the CLI runs, categorised by the suite's own determineTestResult."""
    done = subprocess.run(
        [_executable("node"), str(NODE_SCRIPTS / "count.mjs"), str(install())],
        input=json.dumps(results),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise ComponentError("cache-tests-count", "could not count the results", done.stderr)
    return tuple(
        TestResult(row["id"], row["suite"], row["name"], row["kind"], row["result"], row["reason"])
        for row in json.loads(done.stdout)
    )
