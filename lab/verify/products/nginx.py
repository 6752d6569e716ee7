"""nginx (Debian package nginx-light, 1.22 on Debian 12; proxy_cache is in it) on loopback.

The templates say `daemon off;` so the master stays in the foreground under the lab's
Supervisor; `-p FOLDER` makes every relative path (pid, logs, proxy_temp, the cache) the run
folder's, and `-e` sends the error log there from the first line nginx writes (before it has
read the config, nginx 1.19.5+). Started as root its workers drop to `user www-data;`, so the
folder is www-data's; started by another user, nginx ignores the `user` line with a warning
(checked with nginx 1.22). See https://nginx.org/en/docs/switches.html.
"""

from __future__ import annotations

from pathlib import Path

from lab.verify.products.base import Product, give_to

BINARY = "/usr/sbin/nginx"


def command(config: Path, folder: Path) -> list[str]:
    return [
        BINARY,
        "-c",
        str(config),
        "-p",
        f"{folder}/",
        "-e",
        str(folder / "error.log"),
    ]


def prepare(config: Path, folder: Path) -> None:
    give_to("www-data", folder)


PRODUCT = Product(
    name="nginx",
    package="nginx-light",
    binary=BINARY,
    command=command,
    prepare=prepare,
    user="www-data",
)
