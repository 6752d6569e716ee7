"""`lab-mitmdump` (proxies/lab_mitmdump.py): the addons it leaves out, and those it keeps."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from mitmproxy import options

from proxies.lab_mitmdump import IDLE_AT_DEFAULTS, LabDumpMaster
from tests.lab_helpers import LoopbackOrigin, running_mitmdump


def chain_after_options(**values: object) -> list[str]:
    """The chain's addon classes as `run` leaves it, after these options are set."""

    async def build() -> list[str]:
        opts = options.Options()
        master = LabDumpMaster(opts, with_termlog=False)
        opts.update(**values)
        idle = {id(addon) for addon in master.idle_addons()}
        return [type(a).__name__ for a in master.addons.chain if id(a) not in idle]

    return asyncio.run(build())


def test_idle_addons_leave_the_chain_and_the_working_ones_stay():
    kept = chain_after_options()
    assert not {cls.__name__ for cls in IDLE_AT_DEFAULTS} & set(kept)
    # These act at their defaults: block_global, the mitm.it page, Alt-Svc, h2c; and the proxy.
    for name in ("Core", "Proxyserver", "NextLayer", "TlsConfig", "ScriptLoader", "Block",
                 "Onboarding", "UpdateAltSvc", "DisableH2C", "Dumper", "ErrorCheck"):  # fmt: skip
        assert name in kept, name


def test_an_addon_whose_option_is_set_stays_in_the_chain():
    kept = chain_after_options(modify_headers=["/~q/X-Lab/yes"], anticache=True)
    assert "ModifyHeaders" in kept and "AntiCache" in kept
    assert "MapRemote" not in kept and "StickyCookie" not in kept


def test_every_option_of_mitmdump_is_still_declared():
    async def declared() -> set[str]:
        stock = options.Options()
        from mitmproxy.tools.dump import DumpMaster

        DumpMaster(stock, with_termlog=False)
        lab = options.Options()
        LabDumpMaster(lab, with_termlog=False)
        assert set(lab.keys()) == set(stock.keys())
        return set(lab.keys())

    assert "modify_headers" in asyncio.run(declared())


@pytest.mark.stack
def test_the_real_lab_mitmdump_applies_an_option_of_an_addon_it_would_leave_out(tmp_path):
    seen: list[str] = []

    def answer(_method: str, path: str) -> tuple[int, str, bytes]:
        seen.append(path)
        return 200, "text/plain", b"ok"

    with LoopbackOrigin(answer) as origin:
        for options_set, expected in (({}, "/old"), ({"map_remote": "|/old|/new"}, "/new")):
            with (
                running_mitmdump(tmp_path, [], options_set, executable="lab-mitmdump") as proxy,
                httpx.Client(proxy=proxy.url, trust_env=False, timeout=10) as client,
            ):
                assert client.get(f"{origin.url}/old").text == "ok"
            assert seen[-1] == expected, (options_set, seen)
