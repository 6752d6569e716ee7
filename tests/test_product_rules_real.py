"""The four new products' rules, one answer at a time, against the products themselves: for each
request/response case, two requests through the real product (Varnish, Apache httpd, HAProxy,
Traffic Server from Debian's packages, started from the profile's [real] template as `lab
verify` starts it) and through the simulated profile (a SharedCache with the profile's
misbehaviours): was the second one answered from the cache? The scenarios' cells (`lab
verify`) only send the catalogue's fixes; these cases reach the rules those do not (Set-Cookie,
Vary, Authorization, a 404, a query, max-age above the cap...)."""

from __future__ import annotations

import dataclasses
import http.server
import itertools
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from werkzeug.http import http_date

from lab.runs.lifecycle import new_supervisor
from lab.verify.real import ProductFolder, RealSetup, launch
from proxies import profile as profiles
from proxies.cache_settings import Settings
from proxies.misbehaviours import build
from tests.test_shared_cache import START, make_lab

PROFILES = [
    "varnish-builtin",
    "apache-mod-cache",
    "apache-ignore-query",
    "haproxy-cache",
    "trafficserver-default",
]
DAY = 86400
AUTH = {"Authorization": "Basic eDp5"}
MAX_AGE = {"Cache-Control": "max-age=60"}


@dataclass(frozen=True)
class Case:
    """Two GETs of one URL; `headers` of the origin's answer (an int: a date that many
    seconds from now), each request's own headers, the status, a query string."""

    name: str
    headers: dict[str, str | int]
    status: int = 200
    first: dict[str, str] = field(default_factory=dict)
    second: dict[str, str] = field(default_factory=dict)
    query: str = ""


CASES = [
    Case("plain", {}),
    Case("last-modified a day old", {"Last-Modified": -DAY}),
    Case("etag only", {"ETag": '"v1"'}),
    Case("max-age=60", MAX_AGE),
    Case("max-age=600", {"Cache-Control": "max-age=600"}),
    Case("no-cache + etag", {"Cache-Control": "no-cache", "ETag": '"v1"'}),
    Case("no-cache, max-age=60", {"Cache-Control": "no-cache, max-age=60"}),
    Case("private, max-age=60", {"Cache-Control": "private, max-age=60"}),
    Case("no-store, max-age=60", {"Cache-Control": "no-store, max-age=60"}),
    Case("Expires: 0", {"Expires": "0"}),
    Case("Expires: 0 + last-modified", {"Expires": "0", "Last-Modified": -DAY}),
    Case("Expires in 60 s", {"Expires": 60}),
    Case("Pragma + max-age", {"Pragma": "no-cache", "Cache-Control": "max-age=60"}),
    Case("Pragma + last-modified", {"Pragma": "no-cache", "Last-Modified": -DAY}),
    Case("Set-Cookie + max-age", {"Set-Cookie": "a=1", **MAX_AGE}),
    Case("Vary: Accept-Encoding + max-age", {"Vary": "Accept-Encoding", **MAX_AGE}),
    Case("Vary: * + max-age", {"Vary": "*", **MAX_AGE}),
    Case("max-age=0 + etag", {"Cache-Control": "max-age=0", "ETag": '"v1"'}),
    Case("no-cache with a field name", {"Cache-Control": 'no-cache="Set-Cookie", max-age=60'}),
    Case("must-revalidate, max-age=60", {"Cache-Control": "must-revalidate, max-age=60"}),
    Case("404 + max-age", MAX_AGE, status=404),
    Case("404 plain", {}, status=404),
    Case("query + last-modified", {"Last-Modified": -DAY}, query="?q=1"),
    Case("query + max-age", MAX_AGE, query="?q=1"),
    Case("request Cookie", MAX_AGE, first={"Cookie": "s=1"}, second={"Cookie": "s=1"}),
    Case("request no-cache", MAX_AGE, second={"Cache-Control": "no-cache"}),
    Case("request Pragma", MAX_AGE, second={"Pragma": "no-cache"}),
    Case("no-cache request, then plain", MAX_AGE, first={"Cache-Control": "no-cache"}),
    Case("Pragma request, then plain", MAX_AGE, first={"Pragma": "no-cache"}),
    Case("Authorization, public", {"Cache-Control": "public, max-age=60"}, first=AUTH, second=AUTH),
    Case("Authorization, then plain", MAX_AGE, first=AUTH),
    Case("Authorization public, then plain", {"Cache-Control": "public, max-age=60"}, first=AUTH),
    Case("plain, then Authorization", {"Cache-Control": "public, max-age=60"}, second=AUTH),
    Case("Authorization + last-modified, then plain", {"Last-Modified": -DAY}, first=AUTH),
]  # fmt: skip


def answer_headers(case: Case, now: float) -> dict[str, str]:
    return {
        name: http_date(now + value) if isinstance(value, int) else value
        for name, value in case.headers.items()
    }


class Origin(http.server.ThreadingHTTPServer):
    """Answers /case/<index>/<id> with CASES[index]'s headers and a body counting requests."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OriginHandler)
        self.counter = itertools.count(1)


class _OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Origin

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        case = CASES[int(self.path.split("?")[0].split("/")[2])]
        body = f"{next(self.server.counter)}\n".encode()
        self.send_response(case.status)
        for name, value in answer_headers(case, time.time()).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[int]:
    server = Origin()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def through_real(url: str, index: int) -> bool:
    """Was the second answer the first one again (served from the product's cache)?"""
    case = CASES[index]
    target = f"{url}/case/{index}/{uuid.uuid4().hex}{case.query}"
    with requests.Session() as session:
        session.trust_env = False  # the machine's proxy settings must not route loopback
        first = session.get(target, headers=case.first, timeout=10).text
        second = session.get(target, headers=case.second, timeout=10).text
        if case.first != case.second:
            return first == second
        # A product may write an answer to its cache after sending it, and a second request
        # right behind the first miss it, reach the origin again, and have that answer stored.
        # A third request, once the write is over, tells: stored, it repeats the second.
        third = session.get(target, headers=case.second, timeout=10).text
    return second == third


# Traffic Server writes an answer to its cache after sending it, and a request right behind it
# can meet that write under way (each seen on a busy machine): it misses the answer being
# stored, or reads it as it is written (read-while-writer), an expired `Expires: 0` answer
# included. Timing cannot tell these from the rules (a third request could meet the second's
# write in turn: seen, "Expires: 0: real cached"), so Traffic Server says what it did, in the
# Via header of each answer: its codes for the cache lookup (c) and the cache fill (f).
TRAFFIC_SERVER_VIA = "CONFIG proxy.config.http.insert_response_via_str INT 3"
VIA_CODES = re.compile(r"\[u.c(.)s.f(.)")
WRITTEN = ("W", "U")  # the fill codes of an answer written to the cache: new, or updated
MOST_RACES = 20  # answers that met a write under way, before the case is given up
# Misses behind a write before it counts as one: Traffic Server writes a `Vary: *` answer and
# never finds it again; a miss that met a write under way is followed by a hit.
MOST_MISSES = 4


def with_via(setup: RealSetup, folder: Path) -> RealSetup:
    """`setup` with its records.config also asking for Traffic Server's Via codes: a header on
    each answer, and no change to what is cached."""
    template = folder / setup.template.name
    part = "# file: records.config\n"
    template.write_text(setup.template.read_text().replace(part, f"{part}{TRAFFIC_SERVER_VIA}\n"))
    return dataclasses.replace(setup, template=template)


def through_traffic_server(url: str, index: int) -> bool:
    """Was the second request answered from the cache, by Traffic Server's own account? An
    answer read while it was being written, or a miss right behind a write, is asked again."""
    case = CASES[index]
    target = f"{url}/case/{index}/{uuid.uuid4().hex}{case.query}"
    with requests.Session() as session:
        session.trust_env = False
        _, fill = via_codes(session.get(target, headers=case.first, timeout=10))
        written, misses = fill in WRITTEN, 0
        for _ in range(MOST_RACES):
            lookup, fill = via_codes(session.get(target, headers=case.second, timeout=10))
            if lookup == "W":
                continue  # read while it was written: not an answer to the rules
            if lookup == "M" and written and misses < MOST_MISSES:
                misses += 1  # a write under way, or an answer it never finds (Vary: *)
                written = written or fill in WRITTEN
                continue
            return lookup in ("H", "R")  # a fresh hit, on disk or in memory
    raise AssertionError(f"{case.name}: every answer met a cache write under way")


def via_codes(response: requests.Response) -> tuple[str, str]:
    found = VIA_CODES.search(response.headers.get("Via", ""))
    assert found, f"no Traffic Server Via codes: {response.headers.get('Via')!r}"
    return found.group(1), found.group(2)


def through_profile(name: str, case: Case) -> bool:
    profile = profiles.read(profiles.profile_path(name))
    chain = build(profile.misbehaviours)
    labs = make_lab(lambda: chain)
    lab = next(labs)
    try:
        lab.addon.apply(Settings.from_options(profile.options))
        headers = answer_headers(case, START) | {"Date": http_date(START)}
        url = f"http://app.test:8080/case/x{case.query}"
        for request_headers in (case.first, case.second):
            lab.fetch(url, request_headers=dict(request_headers), response_headers=headers,
                      status=case.status)  # fmt: skip
        return len(lab.origin_hits) == 1
    finally:
        labs.close()


@pytest.mark.stack
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", PROFILES)
def test_every_case_is_answered_as_the_real_product_answers_it(name: str, origin: int, tmp_path):
    setup = RealSetup.of(name)
    setup.check_installed()
    ask = through_real
    if setup.product.name == "trafficserver":
        setup, ask = with_via(setup, tmp_path), through_traffic_server
    sup = new_supervisor(tmp_path)
    folder = ProductFolder(Path(tmp_path), name)
    try:
        running = launch(sup, setup, origin, folder)()
        with ThreadPoolExecutor(8) as pool:
            real = list(pool.map(lambda i: ask(running.url, i), range(len(CASES))))
    finally:
        sup.stop_all()
        folder.keep()
    differing = [
        f"{case.name}: real {'cached' if cached else 'passed'}"
        for case, cached in zip(CASES, real, strict=True)
        if cached != through_profile(name, case)
    ]
    assert not differing, f"{name} ({running.version}): {differing}"
    # The cases tell the products apart: each caches some and passes others.
    assert 0 < sum(real) < len(CASES)
