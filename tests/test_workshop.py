"""`lab up`: the page through the proxy on a printed URL; Ctrl-C leaves no process."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.lab_helpers import LabProcess

pytestmark = pytest.mark.stack


def interrupt(up: LabProcess) -> int:
    up.proc.send_signal(signal.SIGINT)
    code, _ = up.finish(timeout=20)
    return code


def test_up_serves_the_page_through_the_proxy_and_ctrl_c_stops_all(tmp_path):
    with LabProcess(["up", "proxy-cache"], tmp_path) as up:
        page = up.wait_for_match(r"Open this page in any browser:\s+(http://127\.0\.0\.1:\d+/\S*)")
        forward = up.wait_for_match(r"forward proxy .*: (127\.0\.0\.1:\d+)")
        with httpx.Client(trust_env=False, timeout=10) as client:
            answer = client.get(page)
        assert answer.status_code == 200
        assert 'id="start"' in answer.text
        up.wait_for_match(r"proxy: (GET) ")  # the live log saw the request go through the proxy
        assert forward
        # The printed probe command names the app's probe and the proxy: through it, the plain
        # poll's count freezes behind the scenario's cache.
        _, _, probe, _, proxy = up.wait_for_match(r"(lab probe \S+ --proxy \S+)").split()
        assert proxy == f"http://{forward}"
        with httpx.Client(proxy=proxy, trust_env=False, timeout=10) as client:
            counts = [client.get(f"{probe}/none/room-test-1").json()["count"] for _ in range(2)]
        assert counts == [1, 1]
        assert interrupt(up) == 0


def test_up_on_another_address_requires_proxy_authentication(tmp_path):
    # 127.0.0.2 is still loopback, but not 127.0.0.1: the lab treats it as "exposed".
    with LabProcess(["up", "proxy-cache", "--host", "127.0.0.2"], tmp_path) as up:
        credentials = up.wait_for_match(r"Proxy authentication: (\S+)")
        forward = up.wait_for_match(r"forward proxy .*: (127\.0\.0\.2:\d+)")
        target = "http://127.0.0.1:9/"  # never reached: the proxy must refuse first
        with httpx.Client(proxy=f"http://{forward}", trust_env=False, timeout=10) as client:
            assert client.get(target).status_code == 407
        user, password = credentials.split(":", 1)
        with httpx.Client(
            proxy=f"http://{user}:{password}@{forward}", trust_env=False, timeout=10
        ) as client:
            assert client.get(target).status_code != 407
        # The page asks for the same credentials; the printed probe command carries them.
        page = up.wait_for_match(r"Open this page in any browser:\s+(http://127\.0\.0\.2:\d+/\S*)")
        with httpx.Client(trust_env=False, timeout=10) as client:
            assert client.get(page).status_code == 401
            assert client.get(page, auth=(user, password)).status_code == 200
        _, _, probe, _, proxy = up.wait_for_match(r"(lab probe \S+ --proxy \S+)").split()
        assert proxy == f"http://{credentials}@{forward}"
        with httpx.Client(proxy=proxy, trust_env=False, timeout=10) as client:
            assert client.get(f"{probe}/").json()["probe"] == "proxy-cache-lab"
        assert interrupt(up) == 0
