"""The HTTP caching test suite (http-tests/cache-tests, npm `http-cache-tests`, pinned in
lab/verify/cache_tests.py) against a lab profile, as a shared cache in reverse mode.

    .venv/bin/python bench/cache_tests.py --profile rfc [--json]
    .venv/bin/python bench/cache_tests.py --profile squid-default --real  # vs Squid 5.7
    .venv/bin/python bench/cache_tests.py --profile nginx-default --real  # vs nginx 1.22

Installs the suite on first use (npm, into ~/.cache/proxy-cache-lab/, outside git), starts its
origin server on 127.0.0.1, the lab's mitmdump with the profile in reverse mode in front of it
(as lab/stacks/stack.py launch_proxy starts every proxy, whatever mode the profile names), runs
the suite's CLI against the proxy and counts with the suite's own determineTestResult
(dependencies honoured). Prints required tests passed / evaluated, the optional and check tests,
and each failing required test with the suite's reason; `--json`: one JSON object. With
`--real`, the suite runs first through the real product the profile's [real] table names
(lab/verify/suite.py: lab verify's template and start-up, as a reverse proxy), then through
the profile, and prints test by test where their results differ (the required tests with the
same result, of all required tests): lab/verify/suite.py, as `lab verify PROFILE --suite`
runs it. Everything
is on loopback and every process is stopped on every way out. Exit 0 done, 2 bad input, 3 a
component could not start, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from lab.data.errors import EXIT_INTERRUPTED, LabError
from lab.verify import cache_tests, suite

# Published figures on the suite's site (cache-tests.fyi) for real shared caches, required tests.
PUBLISHED = "Caddy ~92.4%, Squid ~87%, nginx ~75%"


def summary(name: str, results: cache_tests.SuiteResults) -> str:
    passed, evaluated = len(results.required_passed), len(results.required_evaluated)
    percent = 100 * passed / evaluated if evaluated else 0.0
    lines = [
        f"{results.to_json()['suite']} through profile {name} (reverse), {results.seconds:.0f} s",
        f"required: {passed} passed of {evaluated} evaluated ({percent:.1f}%); "
        f"published: {PUBLISHED}",
        "required by result: " + _counts(results.counts("required")),
        "optional: " + _counts(results.counts("optimal")),
        "check: " + _counts(results.counts("check")),
    ]
    failing = results.required_failed
    if failing:
        lines.append(f"failing required tests ({len(failing)}):")
        lines += [f"  {t.id}: {t.reason}" for t in failing]
    not_run = [t for t in results.of_kind("required") if t.result not in cache_tests.JUDGED]
    if not_run:
        lines.append(f"required tests not evaluated ({len(not_run)}):")
        lines += [f"  {t.id}: {t.result}{f' ({t.reason})' if t.reason else ''}" for t in not_run]
    return "\n".join(lines)


def _counts(found: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(found.items())) or "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="rfc", help="a lab profile (default: rfc)")
    parser.add_argument(
        "--real",
        action="store_true",
        help="also run the real product the profile's [real] table names, and compare",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--runs-dir", type=Path, help="keep the run folder here (default: a temporary one)"
    )
    args = parser.parse_args()
    try:
        with tempfile.TemporaryDirectory() as folder:
            runs_dir = args.runs_dir or Path(folder)
            if args.real:
                agreement = suite.compare(args.profile, runs_dir)
            else:
                results = suite.run_profile(args.profile, runs_dir)
    except LabError as exc:
        print(f"cache_tests: {exc}", file=sys.stderr)
        if tail := getattr(exc, "log_tail", ""):
            print(tail, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if args.real:
        print(json.dumps(agreement.to_json()) if args.json else agreement.summary())
        return 0
    if args.json:
        print(json.dumps({"profile": args.profile, **results.to_json()}))
    else:
        print(summary(args.profile, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
