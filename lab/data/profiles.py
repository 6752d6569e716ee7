"""Proxy profiles: one TOML file each in proxies/profiles/, setting the addons' options."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from lab.data.errors import BadInput
from lab.data.paths import profiles_dir, relative
from lab.data.tomlfile import NamedFile, Paragraph, load_model

OptionValue = bool | int | float | str | list[str]


class Profile(NamedFile):
    # What real deployment the profile stands for, and the real configuration it imitates.
    real_world: Annotated[Paragraph, Field(min_length=1)]
    # forward: clients are configured to use the proxy; reverse: the proxy stands in front of
    # the app (a CDN or a load balancer with a cache).
    # The exact real configuration imitated (a Squid refresh_pattern line, nginx directives...).
    real_config: str = ""
    mode: Literal["forward", "reverse"] = "forward"
    options: dict[str, OptionValue] = {}
    # Each {name = "...", params...}: see proxies/misbehaviours/; applied in this order.
    # Their parameters are checked by each misbehaviour's own Params model.
    misbehaviours: list[dict[str, Any]] = []


def names() -> list[str]:
    return sorted(path.stem for path in profiles_dir().glob("*.toml"))


def load(name: str) -> Profile:
    return _load(profiles_dir(), name)


@cache
def _load(directory: Path, name: str) -> Profile:
    """Checking a profile loads mitmproxy's addons (about 0.1 s): do it once per process."""
    path = directory / f"{name}.toml"
    if not path.exists():
        raise BadInput(f"unknown proxy profile {name!r} (known: {', '.join(names())})")
    profile = load_model(path, Profile)
    if profile.name != path.stem:
        raise BadInput(f"{relative(path)}: field 'name': must match the file name {path.stem!r}")
    check_options(profile, path)
    return profile


def check_options(profile: Profile, path: Path) -> None:
    """Check option names, types and values with the addons themselves, before anything starts.

    A profile may set our addons' options and mitmproxy's own (modify_headers, for one).
    """
    from mitmproxy import exceptions
    from mitmproxy.test import taddons

    from proxies import lab_addons
    from proxies.misbehaviours import MisbehaviourError, build

    try:
        build(profile.misbehaviours)
    except MisbehaviourError as exc:
        raise BadInput(f"{relative(path)}: {exc}") from None
    with taddons.context(*lab_addons.make_addons()) as tctx:
        for name, value in profile.options.items():
            if name not in tctx.options:
                raise BadInput(f"{relative(path)}: field 'options.{name}': unknown proxy option")
            declared = tctx.options._options[name].typespec
            if isinstance(value, bool) and declared is not bool:
                raise BadInput(
                    f"{relative(path)}: field 'options.{name}': expected {declared.__name__}, "
                    f"got a boolean"
                )
            try:
                tctx.options.update(**{name: value})
            except (exceptions.OptionsError, TypeError, ValueError) as exc:
                raise BadInput(f"{relative(path)}: field 'options.{name}': {exc}") from None


def mitmdump_args(profile: Profile) -> list[str]:
    args: list[str] = ["--set", f"misbehaviours={json.dumps(profile.misbehaviours)}"]
    for name, value in profile.options.items():
        for item in value if isinstance(value, list) else [value]:
            text = str(item).lower() if isinstance(item, bool) else str(item)
            args += ["--set", f"{name}={text}"]
    return args


def listener_spec(profile: Profile) -> dict[str, Any]:
    """The profile as one listener of a shared mitmdump (proxies/listeners.py)."""
    return {"options": dict(profile.options), "misbehaviours": profile.misbehaviours}


def can_share_a_process(profile: Profile) -> bool:
    """Only the cache's options can differ between listeners of one mitmdump; a profile that
    sets mitmproxy's own options needs a process of its own."""
    from proxies.shared_cache import OPTION_NAMES

    return set(profile.options) <= set(OPTION_NAMES)
