"""Apache httpd (Debian package apache2, 2.4 on Debian 12) with mod_cache as a caching proxy.

`apache2 -X` runs one process in the foreground (no children, no detaching), which the lab
supervises like its own; `-f` names the filled template, whose ServerRoot, PidFile, Mutex
directory, logs and CacheRoot are all in the run folder, and which loads every module it needs
from /usr/lib/apache2/modules itself (Debian's /etc/apache2 is not read). Started as root it
serves as `User www-data`, which must write the disk cache: the folder is www-data's. See
https://httpd.apache.org/docs/2.4/programs/httpd.html.
"""

from __future__ import annotations

from pathlib import Path

from lab.verify.products.base import Product, give_to

BINARY = "/usr/sbin/apache2"


def command(config: Path, folder: Path) -> list[str]:
    return [BINARY, "-X", "-f", str(config)]


def prepare(config: Path, folder: Path) -> None:
    (folder / "cache").mkdir(exist_ok=True)
    give_to("www-data", folder)


PRODUCT = Product(
    name="apache",
    package="apache2",
    binary=BINARY,
    command=command,
    prepare=prepare,
    user="www-data",
)
