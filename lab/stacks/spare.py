"""A warm spare proxy (proxies/warm_spare.py): a mitmdump started before its profile is known,
claimed later with the settings `launch_proxy` would have started it with. The pytest plugin
starts one as it collects a test that uses `lab_proxy`, so mitmproxy's imports overlap the
session's own start instead of the test that first asks for a proxy."""

from __future__ import annotations

from dataclasses import dataclass

from lab.data import profiles
from lab.stacks.ports import LOOPBACK
from lab.stacks.processes import Component, Supervisor, read_ready_file
from lab.stacks.stack import ProxyEndpoint, mitmdump_executable, reverse_settings
from sample_app.events import write_json_atomically


@dataclass
class SpareProxy:
    key: str
    component: Component
    sup: Supervisor

    def claim(self, profile: profiles.Profile, app_url: str | None) -> ProxyEndpoint:
        """The spare as `launch_proxy(sup, key, profile, app_url, single=False)` would have
        started it (plain HTTP, one listener); ComponentError if it cannot take the claim."""
        run_dir = self.sup.run_dir
        events = run_dir / f"proxy-events-{self.key}.jsonl"
        ready_file = run_dir / f"proxy-{self.key}.ready.json"
        specs = [f"observer_events={events}"]
        if profile.mode == "reverse":
            assert app_url is not None
            specs += reverse_settings(app_url)
        args = profiles.mitmdump_args(profile)
        specs += [value for flag, value in zip(args[::2], args[1::2], strict=True)]
        assert all(flag == "--set" for flag in args[::2]), args
        write_json_atomically(
            run_dir / f"spare-{self.key}.json", {"set": specs, "ready": str(ready_file)}
        )
        self.sup.wait_until(
            self.component, lambda: read_ready_file(ready_file) is not None, "its ready file"
        )
        ready = read_ready_file(ready_file) or {}
        if "error" in ready:
            raise self.component.fail(f"could not take profile {profile.name}: {ready['error']}")
        address = f"http://{LOOPBACK}:{ready['port']}"
        return ProxyEndpoint(self.key, profile.name, profile.mode, address, events)


def launch_spare(sup: Supervisor, key: str) -> SpareProxy:
    """Start a spare: mitmdump with the lab's addons and no listener until it is claimed."""
    import proxies.lab_addons as addons_script

    control = sup.run_dir / f"spare-{key}.json"
    component = sup.add(
        f"proxy-{key}",
        [
            mitmdump_executable(),
            "--listen-host",
            LOOPBACK,
            "--listen-port",
            "0",
            "-s",
            addons_script.__file__,
            "--set",
            "server=false",
            "--set",
            f"spare_control={control}",
        ],
    )
    return SpareProxy(key, component, sup)
