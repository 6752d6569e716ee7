"""Apache httpd (Debian package apache2, 2.4 on Debian 12) with mod_cache as a caching proxy.

`apache2 -DFOREGROUND` keeps the parent in the foreground (httpd(8): it does not detach) with
its usual children, so the lab supervises it like its own processes and a SIGTERM to the
parent stops them all. Not `-X` (httpd's debug mode: one process, no children), which is not
how Apache is deployed: with it, one poll of one cell in about ten verify runs was cut off
(the client's RemoteProtocolError, mod_proxy's AH01110 in the log) on this loaded machine, a
cause not proven. `-f` names the filled template, whose ServerRoot, PidFile, Mutex directory,
logs and CacheRoot are all in the run folder, and which loads every module it needs from
/usr/lib/apache2/modules itself (Debian's /etc/apache2 is not read). Started as root the
children serve as `User www-data`, which must write the disk cache: the folder is www-data's.
See https://httpd.apache.org/docs/2.4/programs/httpd.html.
"""

from __future__ import annotations

from pathlib import Path

from lab.verify.products.base import Product, give_to

BINARY = "/usr/sbin/apache2"


def command(config: Path, folder: Path) -> list[str]:
    return [BINARY, "-DFOREGROUND", "-f", str(config)]


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
