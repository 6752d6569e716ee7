"""`lab-mitmdump`: mitmdump itself, less the default addons that a run's options leave idle.

mitmdump calls every hook of every flow on each of its ~37 addons, and then an `update` hook on
each again. Most of them act only when one of their options is set (map_remote, proxyauth,
save_stream_file, ...) or serve commands nobody sends here (cut, export, the browser). In a
proxy answering polls one after another, a request took 26% less of the proxy's CPU once they
were out of the chain (4.34 -> 3.23 ms, bench/proxy_cpu.py); a matrix cell's proxies, 12% less.

Every default addon is loaded as mitmdump loads it, so every option and command line argument
is declared and checked as before. Once the options are final, just before the proxy starts,
an addon of `IDLE_AT_DEFAULTS` whose options all still have their defaults is taken out of
the chain. Each one there was read to do nothing at its defaults; an addon that acts at its
defaults (block_global, onboarding, the Alt-Svc rewrite, h2c) stays. The lab's proxies are
started this way; `LAB_MITMDUMP` names another mitmdump (the stock one) to use instead.
"""

from __future__ import annotations

import sys
from typing import Any

from mitmproxy import addons, master, options
from mitmproxy.addons import (
    anticache,
    anticomp,
    blocklist,
    browser,
    clientplayback,
    command_history,
    comment,
    cut,
    dns_resolver,
    dumper,
    errorcheck,
    export,
    keepserving,
    maplocal,
    mapremote,
    modifybody,
    modifyheaders,
    proxyauth,
    readfile,
    save,
    savehar,
    serverplayback,
    stickyauth,
    stickycookie,
    strip_dns_https_records,
    upstream_auth,
)
from mitmproxy.tools import cmdline
from mitmproxy.tools.main import run

# Each acts only through an option (or a command, or a DNS flow the lab never sends).
IDLE_AT_DEFAULTS: tuple[type, ...] = (
    anticache.AntiCache,
    anticomp.AntiComp,
    blocklist.BlockList,
    browser.Browser,
    clientplayback.ClientPlayback,
    command_history.CommandHistory,
    comment.Comment,
    cut.Cut,
    dns_resolver.DnsResolver,
    export.Export,
    maplocal.MapLocal,
    mapremote.MapRemote,
    modifybody.ModifyBody,
    modifyheaders.ModifyHeaders,
    proxyauth.ProxyAuth,
    save.Save,
    savehar.SaveHar,
    serverplayback.ServerPlayback,
    stickyauth.StickyAuth,
    stickycookie.StickyCookie,
    strip_dns_https_records.StripDnsHttpsRecords,
    upstream_auth.UpstreamAuth,
)


class LabDumpMaster(master.Master):
    """mitmproxy's DumpMaster, adding the same addons in the same order, noting which options
    each idle one declares so that `run` can tell whether any of them was set."""

    def __init__(
        self,
        opts: options.Options,
        loop: Any = None,
        with_termlog: bool = True,
        with_dumper: bool = True,
    ) -> None:
        super().__init__(opts, event_loop=loop, with_termlog=with_termlog)
        self.idle_candidates: list[tuple[Any, set[str]]] = []
        for addon in addons.default_addons():
            before = set(opts.keys())
            self.addons.add(addon)
            if isinstance(addon, IDLE_AT_DEFAULTS):
                self.idle_candidates.append((addon, set(opts.keys()) - before))
        if with_dumper:
            self.addons.add(dumper.Dumper())
        self.addons.add(
            keepserving.KeepServing(), readfile.ReadFileStdin(), errorcheck.ErrorCheck()
        )

    def idle_addons(self) -> list[Any]:
        """The candidates none of whose options differ from their defaults now."""
        return [
            addon
            for addon, names in self.idle_candidates
            if all(getattr(self.options, name) == self.options.default(name) for name in names)
        ]

    async def run(self) -> None:
        # The command line, config.yaml and every `--set` have been applied by now. Out of the
        # chain only: no hook reaches them, and an addon that looks one up by name still finds
        # it (AddonManager.remove would also run their done hooks, one of them async).
        idle = {id(addon) for addon in self.idle_addons()}
        self.addons.chain = [addon for addon in self.addons.chain if id(addon) not in idle]
        await super().run()


def main(argv: list[str] | None = None) -> None:
    """mitmdump's own entry point, with this master (and its filter arguments)."""

    def extra(args: Any) -> dict[str, str]:
        if args.filter_args:
            expression = " ".join(args.filter_args)
            return {
                "save_stream_filter": expression,
                "readfile_filter": expression,
                "dumper_filter": expression,
            }
        return {}

    run(LabDumpMaster, cmdline.mitmdump, sys.argv[1:] if argv is None else argv, extra)


if __name__ == "__main__":
    main()
