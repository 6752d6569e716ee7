"""Proxy profiles as the lab finds and checks them. The profile format and its translation to
the addons' settings are proxies/profile.py's; this adds what only the lab needs: the folder
(LAB_PROFILES_DIR), one load per process, and errors as BadInput with the lab's wording."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lab.data.errors import BadInput
from lab.data.paths import profiles_dir, relative
from lab.data.tomlfile import load_model
from proxies.profile import (
    Profile,
    ProfileError,
    can_share_a_process,
    listener_spec,
    mitmdump_args,
    read,
    set_options,
)

__all__ = [
    "Profile",
    "can_share_a_process",
    "check_options",
    "listener_spec",
    "load",
    "mitmdump_args",
    "deployment_names",
    "described",
    "names",
]


def names() -> list[str]:
    return sorted(path.stem for path in profiles_dir().glob("*.toml"))


def load(name: str) -> Profile:
    return _load(profiles_dir(), name)


def described(name: str) -> Profile:
    """A profile read and validated as data, without the addons' checks of its options (a
    second of mitmproxy imports; `load` makes them): for what a profile says of itself."""
    return _read(profiles_dir(), name)


def deployment_names() -> list[str]:
    """Every profile that stands for a real deployment: what an audit checks by default."""
    return [name for name in names() if described(name).stands_for == "deployment"]


@cache
def _read(directory: Path, name: str) -> Profile:
    path = directory / f"{name}.toml"
    if not path.exists():
        raise BadInput(f"unknown proxy profile {name!r} (known: {', '.join(names())})")
    try:
        return read(path)
    except ProfileError as exc:
        raise BadInput(str(exc)) from None


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
    """Check the misbehaviours and the option names, types and values with the addons
    themselves, before anything starts. A profile may set our addons' options and mitmproxy's
    own (modify_headers, for one)."""
    from mitmproxy.test import taddons

    from proxies import lab_addons

    with taddons.context(*lab_addons.make_addons()) as tctx:
        try:
            set_options(tctx.options, profile, relative(path))
        except ProfileError as exc:
            raise BadInput(str(exc)) from None
