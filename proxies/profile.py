"""Proxy profiles: one TOML file each in proxies/profiles/, the options and misbehaviours that
make the addons imitate one real proxy; and the `profile` option that applies one in mitmdump:

    mitmdump -s proxies/lab_addons.py --set profile=squid-override
    mitmdump -s proxies/lab_addons.py --set profile=path/to/my-proxy.toml

This module is the one translation from a profile to the addons' settings: mitmproxy options
(`mitmproxy_options`, `mitmdump_args`) or one listener of a shared mitmdump (`listener_spec`).
"""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mitmproxy import ctx, exceptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from proxies.cache_settings import options_a_listener_cannot_set
from proxies.misbehaviours import MisbehaviourError, build

if TYPE_CHECKING:
    from mitmproxy.addonmanager import Loader
    from mitmproxy.optmanager import OptManager

PROFILES_DIR = Path(__file__).parent / "profiles"
# The real products' configuration templates a profile's [real] table names (`lab verify`).
REAL_DIR = Path(__file__).parent / "real"
OptionValue = bool | int | float | str | list[str]


class RealProduct(BaseModel):
    """A profile's `[real]` table: the real product it imitates, runnable by `lab verify`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A module lab/verify/products/<product>.py (the lab checks that it exists).
    product: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]*$")]
    # A file in proxies/real/: real_config made runnable, string.Template placeholders.
    config: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    # How the real product sits: the client's forward proxy, or in front of the app.
    placement: Literal["forward", "reverse"]


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    summary: Annotated[str, Field(min_length=1, max_length=120)]
    # What real deployment the profile stands for, and the real configuration it imitates.
    real_world: Annotated[str, Field(min_length=1)]
    # The exact real configuration imitated (a Squid refresh_pattern line, nginx directives...).
    real_config: str = ""
    # forward: clients are configured to use the proxy; reverse: the proxy stands in front of
    # the app (a CDN or a load balancer with a cache).
    mode: Literal["forward", "reverse"] = "forward"
    # What the profile stands for: a real deployment's proxy (what `lab audit` checks by
    # default), a network condition (slow, flaky), or the RFC 9111 reference cache.
    stands_for: Literal["deployment", "network", "reference"] = "deployment"
    # The addons' options (the cache's, say) and mitmproxy's own (modify_headers, for one).
    options: dict[str, OptionValue] = {}
    # Each {name = "...", params...}: see proxies/misbehaviours/; applied in this order.
    # Their parameters are checked by each misbehaviour's own Params model.
    misbehaviours: list[dict[str, Any]] = []
    # The real product and its runnable configuration (`lab verify`), when there is one.
    real: RealProduct | None = None

    @field_validator("real_world")
    @classmethod
    def fold_paragraph(cls, value: str) -> str:
        return " ".join(value.split())


class ProfileError(ValueError):
    """A profile that cannot be found or read; the message names the file, field and problem."""


def names(directory: Path = PROFILES_DIR) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.toml"))


def profile_path(name_or_path: str, directory: Path = PROFILES_DIR) -> Path:
    """A profile's name (a file in `directory`), or the path of a profile's TOML file."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return Path(name_or_path).expanduser()
    path = directory / f"{name_or_path}.toml"
    if not path.exists():
        known = ", ".join(names(directory))
        raise ProfileError(f"unknown proxy profile {name_or_path!r} (known: {known})")
    return path


def read(path: Path) -> Profile:
    """The profile in `path`; `set_options` checks its misbehaviours and options."""
    try:
        profile = Profile.model_validate(tomllib.loads(path.read_text("utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: cannot be read: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(file)"
        raise ProfileError(f"{path}: field '{field}': {first['msg']}") from None
    if profile.name != path.stem:
        raise ProfileError(f"{path}: field 'name': must match the file name {path.stem!r}")
    return profile


def set_options(options: OptManager, profile: Profile, where: str) -> None:
    """Set the profile's misbehaviours and options on mitmproxy's `options`, one at a time,
    so that the addons check each and an error names its field; `where` names the file."""
    try:
        build(profile.misbehaviours)
    except MisbehaviourError as exc:
        raise ProfileError(f"{where}: {exc}") from None
    for name, value in mitmproxy_options(profile).items():
        field = f"'options.{name}'" if name in profile.options else f"'{name}'"
        if name not in options:
            raise ProfileError(f"{where}: field {field}: unknown proxy option")
        declared = options._options[name].typespec
        if isinstance(value, bool) and declared is not bool:
            raise ProfileError(
                f"{where}: field {field}: expected {declared.__name__}, got a boolean"
            )
        try:
            options.update(**{name: value})
        except (exceptions.OptionsError, TypeError, ValueError) as exc:
            raise ProfileError(f"{where}: field {field}: {exc}") from None


def mitmproxy_options(profile: Profile) -> dict[str, Any]:
    """The mitmproxy option values that apply the profile to lab_addons.py's addons."""
    return {"misbehaviours": json.dumps(profile.misbehaviours), **profile.options}


def mitmdump_args(profile: Profile) -> list[str]:
    """The same, as mitmdump's `--set` arguments (a list option is set once per item)."""
    args: list[str] = []
    for name, value in mitmproxy_options(profile).items():
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
    return not options_a_listener_cannot_set(profile.options)


class UseProfile:
    """The `profile` option: a profile's name or TOML path, whose options and misbehaviours
    are set on mitmproxy's options when it is set (they replace the same options given with
    `--set`). Load it with the addons that declare those options (lab_addons.py does)."""

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "profile",
            str,
            "",
            "A proxy profile to imitate: a name from proxies/profiles/ (squid-override) or "
            "the path of a profile's TOML file. Sets the options and misbehaviours it names.",
        )

    def configure(self, updated: set[str]) -> None:
        if "profile" not in updated or not ctx.options.profile:
            return
        try:
            path = profile_path(ctx.options.profile)
            profile = read(path)
            set_options(ctx.options, profile, str(path))
        except ProfileError as exc:
            raise exceptions.OptionsError(f"profile: {exc}") from None
        if profile.mode == "reverse":
            # As the lab starts a reverse proxy: the app sees the Host the client asked for.
            ctx.options.update(keep_host_header=True)
            if not any(mode.startswith("reverse:") for mode in ctx.options.mode):
                logging.warning(
                    "profile %s is a reverse proxy: start mitmdump with --mode "
                    "reverse:http://APP-HOST:PORT",
                    profile.name,
                )
        logging.info("profile %s: %s", profile.name, profile.summary)
