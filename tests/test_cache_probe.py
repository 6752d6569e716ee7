"""The cache probe endpoint (cache_probe/): mounted in the sample app (WSGI, Flask's test
client) and in the FastAPI example (ASGI, httpx's ASGI transport). No process started."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from cache_probe import ASGIProbeMiddleware, ProbeMiddleware, ProbeTable
from cache_probe.core import MAX_PROBES, probe_strategies
from sample_app import strategies
from sample_app.config import AppConfig
from sample_app.web import create_app

PROBE = "/_cache-probe"
PROBE_ID = "abcdef0123456789"


@pytest.fixture
def client(tmp_path):
    app = create_app(AppConfig.standalone(tmp_path))
    return app.test_client()


def probe_table(client) -> ProbeTable:
    middleware = client.application.wsgi_app
    assert isinstance(middleware, ProbeMiddleware)
    return middleware.probe.table


def test_the_index_lists_the_strategies_and_is_not_stored(client):
    answer = client.get(f"{PROBE}/")
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    listed = answer.get_json()["strategies"]
    book = strategies.load()
    assert set(listed) == {n for n, s in book.strategies.items() if s.transport == "poll"}
    assert listed["no-store"]["headers"] == book.get("no-store").response_headers


def test_every_answer_from_the_app_counts_and_carries_its_strategys_headers(client):
    for strategy in probe_strategies().values():
        first = client.get(f"{PROBE}/{strategy.name}/{PROBE_ID}-{strategy.name}")
        second = client.get(f"{PROBE}/{strategy.name}/{PROBE_ID}-{strategy.name}?x=1")
        assert first.status_code == second.status_code == 200
        assert (first.get_json()["count"], second.get_json()["count"]) == (1, 2)
        for name, value in strategy.headers:
            assert first.headers[name] == value
        assert ("ETag" in first.headers) == strategy.etag
        assert ("Last-Modified" in first.headers) == (strategy.last_modified_age_s is not None)


def test_a_path_nonce_and_post_reach_the_same_counter(client):
    assert client.get(f"{PROBE}/none/{PROBE_ID}").get_json()["count"] == 1
    assert client.get(f"{PROBE}/none/{PROBE_ID}/n0nce").get_json()["count"] == 2
    assert client.post(f"{PROBE}/post/{PROBE_ID}", json={}).get_json()["count"] == 3


def test_an_etag_strategy_answers_a_matching_if_none_match_with_304(client):
    first = client.get(f"{PROBE}/no-cache-etag/{PROBE_ID}")
    etag = first.headers["ETag"]
    # The count moved on: the same ETag no longer matches, a new version comes back.
    again = client.get(f"{PROBE}/no-cache-etag/{PROBE_ID}", headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.headers["ETag"] != etag


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"{PROBE}/nosuch/{PROBE_ID}", 400),
        (f"{PROBE}/sse/{PROBE_ID}", 400),  # an event stream is not a status answer
        (f"{PROBE}/none/short", 400),
        (f"{PROBE}/none/{PROBE_ID}/bad%20nonce", 400),
        (f"{PROBE}/none", 404),
        (f"{PROBE}/a/b/c/d", 404),
    ],
)
def test_a_bad_request_is_refused_and_nothing_is_stored(client, path, status):
    answer = client.get(path)
    assert answer.status_code == status
    assert answer.headers["Cache-Control"] == "no-store"
    assert len(probe_table(client)) == 0


def test_nothing_of_the_request_is_reflected(client):
    answer = client.get(
        f"{PROBE}/none/{PROBE_ID}?Cache-Control=public",
        headers={"X-Evil": "injected", "Cache-Control": "max-age=999"},
    )
    assert "injected" not in answer.get_data(as_text=True)
    assert "max-age=999" not in str(answer.headers)
    assert "X-Evil" not in answer.headers


def test_other_paths_reach_the_app(client):
    assert client.get("/").status_code == 200
    assert len(probe_table(client)) == 0


def test_the_table_is_bounded_and_forgets():
    now = [0.0]
    table = ProbeTable(max_probes=3, ttl_s=10, clock=lambda: now[0])
    for n in range(5):
        table.hit(f"probe-{n:04d}")
    assert len(table) == 3
    assert table.hit("probe-0004") == 2  # kept: among the last three
    assert table.hit("probe-0000") == 1  # evicted: counts again from 1
    now[0] = 100.0
    table.hit("probe-new-one")
    assert len(table) == 1  # the rest expired
    assert MAX_PROBES >= 100


def test_the_asgi_middleware_in_the_fastapi_example():
    from examples.fastapi_jobs.app import create_app as fastapi_app

    app = fastapi_app()

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return [
                await client.get(f"{PROBE}/"),
                await client.get(f"{PROBE}/cc-no-store/{PROBE_ID}"),
                await client.get(f"{PROBE}/cc-no-store/{PROBE_ID}"),
                await client.get(f"{PROBE}/nosuch/{PROBE_ID}"),
                await client.get("/"),
            ]

    index, first, second, unknown, own = asyncio.run(calls())
    assert index.headers["cache-control"] == "no-store"
    assert (first.json()["count"], second.json()["count"]) == (1, 2)
    assert first.headers["cache-control"] == "no-store"
    assert unknown.status_code == 400
    assert own.status_code == 200 and "start" in own.json()
    assert any(
        isinstance(m.cls, type) and m.cls is ASGIProbeMiddleware for m in app.user_middleware
    )
