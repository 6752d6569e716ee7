"""A proxy started before anyone knows which profile it will be: the pytest plugin's warm spare.

mitmdump spends most of its start-up importing mitmproxy. The pytest plugin starts one spare
as soon as it has collected a test that uses `lab_proxy`, with no listener (`server=false`),
so the imports overlap the test session's own start; the first `lab_proxy(...)` then claims
it: the lab writes a claim file (the `--set` specs the proxy would have been started with),
and this addon applies them, brings the listener up and writes the ready file.

    mitmdump -s proxies/lab_addons.py --set server=false --set spare_control=/run/spare.json
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from proxies.observer import write_ready_file

# The claim file is looked for this often: how long after it is written the spare starts
# applying it.
CLAIM_POLL_S = 0.02


class WarmSpare:
    def __init__(self) -> None:
        self._claim: asyncio.Task[None] | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "spare_control",
            str,
            "",
            "Wait for a claim at this path (JSON: `set`, the option specs to apply; `ready`, "
            "the ready file to write once listening) before serving: a warm spare.",
        )

    def running(self) -> None:
        if ctx.options.spare_control and self._claim is None:
            self._claim = asyncio.get_running_loop().create_task(
                self._serve_claim(Path(ctx.options.spare_control))
            )

    async def _serve_claim(self, control: Path) -> None:
        while not control.exists():
            await asyncio.sleep(CLAIM_POLL_S)
        claim: dict[str, Any] = json.loads(control.read_text("utf-8"))
        try:
            ctx.options.set(*claim["set"], "server=true")
            proxyserver = ctx.master.addons.get("proxyserver")
            await proxyserver.setup_servers()
            host, port = proxyserver.listen_addrs()[0][:2]
        except (exceptions.OptionsError, IndexError, OSError) as exc:
            logging.error("warm spare: the claim could not be applied: %s", exc)
            write_ready_file(claim["ready"], {"error": str(exc) or type(exc).__name__})
            return
        write_ready_file(claim["ready"], {"host": host, "port": port, "pid": os.getpid()})
