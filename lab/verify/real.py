"""A profile's real product, started from its `[real]` table: the template in proxies/real/
filled in, the product checked as installed, run in the foreground under the lab's Supervisor
(own session, log in the run folder, stopped on every way out) and ready once it listens.
"""

from __future__ import annotations

import socket
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.data import paths, profiles
from lab.data.errors import BadInput, ComponentError
from lab.stacks import leash
from lab.stacks.ports import LOOPBACK, free_port, launch_retrying_taken_ports, listens_itself
from lab.stacks.processes import Component, Supervisor, stop_grace_for
from lab.verify import products
from lab.verify.products.base import Product


def templates_dir() -> Path:
    """proxies/real/, beside the profiles folder (LAB_PROFILES_DIR moves both)."""
    return paths.profiles_dir().parent / "real"


@dataclass(frozen=True)
class RealSetup:
    """What a profile's [real] table names, checked: BadInput when it cannot be used."""

    profile: str
    product: Product
    template: Path
    placement: str  # "forward" or "reverse"

    @classmethod
    def of(cls, name: str) -> RealSetup:
        profile = profiles.load(name)
        if profile.real is None:
            having = ", ".join(real_profiles()) or "none"
            raise BadInput(
                f"profile {name!r} has no [real] table: no real product to verify it against "
                f"(profiles with one: {having})"
            )
        where = paths.relative(paths.profiles_dir() / f"{name}.toml")
        template = templates_dir() / profile.real.config
        if not template.is_file():
            raise BadInput(f"{where}: field 'real.config': no template {paths.relative(template)}")
        try:
            product = products.get(profile.real.product)
        except BadInput as exc:
            raise BadInput(f"{where}: field 'real.product': {exc}") from None
        fill(template, placeholders(product, 1, 1, Path("/nonexistent")))  # BadInput now
        return cls(name, product, template, profile.real.placement)

    def check_installed(self) -> None:
        """ComponentError (exit 3), one line with the install command, when it is missing."""
        if not self.product.installed:
            raise ComponentError(
                self.product.name,
                f"{self.product.binary} is not installed (profile {self.profile} runs it): "
                f"{self.product.install_command}",
            )


def real_profiles() -> list[str]:
    """Every profile with a [real] table, sorted."""
    return [name for name in profiles.names() if profiles.described(name).real is not None]


def fill(template: Path, values: dict[str, str | int]) -> str:
    """The template with its $placeholders filled; BadInput naming the file and placeholder."""
    try:
        return string.Template(template.read_text("utf-8")).substitute(values)
    except KeyError as exc:
        known = ", ".join(f"${name}" for name in values)
        raise BadInput(
            f"{paths.relative(template)}: unknown placeholder ${exc.args[0]} (known: {known}; "
            "write $$ for a literal dollar)"
        ) from None
    except ValueError as exc:
        raise BadInput(f"{paths.relative(template)}: {exc} (write $$ for a literal $)") from None


def placeholders(
    product: Product, listen_port: int, app_port: int, folder: Path
) -> dict[str, str | int]:
    """The values a template may use (interface.md): $listen_port, $app_host, $app_port,
    $folder, $user."""
    return {
        "listen_port": listen_port,
        "app_host": LOOPBACK,
        "app_port": app_port,
        "folder": str(folder),
        "user": product.run_as,
    }


class ProductFolder:
    """Where a product keeps its files while it runs (pid, logs, cache, the filled config): a
    fresh folder in the system's temp folder, moved into the run folder when it has stopped.
    Started as root, the product drops to its own user, which often cannot reach the run folder
    (a project in /root, pytest's 0700 temp folders): Squid then dies at start."""

    def __init__(self, run_dir: Path, profile: str) -> None:
        self.kept = run_dir / profile
        self.path = Path(tempfile.mkdtemp(prefix=f"lab-verify-{profile}-"))
        self.ensure()

    def ensure(self) -> None:
        self.path.mkdir(exist_ok=True)
        self.path.chmod(0o755)

    def keep(self) -> None:
        """Once the product has stopped: its files into the run folder, the temp folder gone
        (the leash does it as the product stops; this is for a leash that was killed)."""
        leash.move_folder(self.path, self.kept)


@dataclass
class RunningProduct:
    setup: RealSetup
    url: str  # http://127.0.0.1:PORT
    component: Component
    version: str


def launch(
    sup: Supervisor, setup: RealSetup, app_port: int | None, files: ProductFolder
) -> Callable[[], RunningProduct]:
    """Start the product for one profile, its files in `files`; return the function that
    waits until it listens. A reverse product forwards to 127.0.0.1:app_port."""
    product = setup.product
    folder = files.path
    version = product.version()

    def start() -> tuple[Component, int]:
        files.ensure()  # a launch that lost its port had its leash move the folder away
        listen_port = free_port()
        values = placeholders(product, listen_port, app_port or 0, folder)
        config = folder / setup.template.name
        config.write_text(fill(setup.template, values), "utf-8")
        product.prepare(config, folder)
        # On a leash: a product that changes its user would outlive a lab killed with SIGKILL.
        grace = stop_grace_for(setup.profile, product.stop_grace)
        argv = leash.command(product.command(config, folder), grace=grace, keep_in=files.kept)
        component = sup.add(setup.profile, argv, cwd=folder)
        component.stop_grace = product.stop_grace
        return component, listen_port

    def wait(component: Component, listen_port: int) -> None:
        sup.wait_until(
            component,
            lambda: _listens(listen_port) and listens_itself(component, listen_port),
            f"it to listen on {LOOPBACK}:{listen_port}",
        )

    # Another program (another lab's free_port) may take the port before the product binds it.
    _, launched = launch_retrying_taken_ports(sup, start, wait)

    def ready() -> RunningProduct:
        component, listen_port = launched()
        return RunningProduct(setup, f"http://{LOOPBACK}:{listen_port}", component, version)

    return ready


def _listens(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False
