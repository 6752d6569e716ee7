"""Proxy profiles as the lab finds and checks them. The profile format and its translation to
the addons' settings are proxies/profile.py's; this adds what only the lab needs: the folder
(LAB_PROFILES_DIR), one load per process, and errors as BadInput with the lab's wording."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lab.data.errors import BadInput
from lab.data.paths import profiles_dir, relative
from lab.data.tomlfile import load_model
from proxies.profile import Profile, can_share_a_process, listener_spec, mitmdump_args

__all__ = [
    "Profile",
    "can_share_a_process",
    "check_options",
    "listener_spec",
    "load",
    "mitmdump_args",
    "names",
]


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
