"""Real Squid 5.7 and nginx 1.22 (Debian 12 packages) as reverse proxies in front of an origin,
for bench/cache_tests.py's per-product agreement: each with its config, pid file, logs and cache
in the run folder, bound to 127.0.0.1, a Supervisor child (so stopped on every way out).

The caching configuration is the one the lab profile names in its `real_config`: Squid's
squid.conf.default refresh_pattern lines (squid-default), nginx's bare `proxy_cache` (nginx-
default); the reverse-proxy lines are the suite's own docker/ configs for these products. This
is a stopgap until `lab verify` (issue 13 item 1) owns starting real products.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from urllib.parse import urlsplit

from lab.data.errors import ComponentError
from lab.stacks.ports import free_port
from lab.stacks.processes import Supervisor

# Which lab profile each product's configuration is the real_config of.
PROFILE_OF = {"squid": "squid-default", "nginx": "nginx-default"}

SQUID_CONF = """\
http_port 127.0.0.1:{port} accel defaultsite=127.0.0.1:{port} no-vhost
cache_peer 127.0.0.1 parent {origin_port} 0 no-query no-digest originserver name=origin
cache_peer_access origin allow all
acl loopback src 127.0.0.1/32
http_access allow loopback
http_access deny all
cache_mem 64 MB
pid_filename {run}/squid.pid
access_log stdio:{run}/squid-access.log
cache_log {run}/squid-cache.log
cache_store_log none
coredump_dir {run}
pinger_enable off
icp_port 0
htcp_port 0
shutdown_lifetime 1 second
# squid.conf.default's lines, as the squid-default profile's real_config says
refresh_pattern ^ftp:           1440    20%     10080
refresh_pattern ^gopher:        1440    0%      1440
refresh_pattern -i (/cgi-bin/|\\?) 0     0%      0
refresh_pattern .               0       20%     4320
"""

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
user root;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {run}/nginx-access.log;
    client_body_temp_path {run}/nginx-body;
    proxy_temp_path {run}/nginx-proxy;
    fastcgi_temp_path {run}/nginx-fastcgi;
    uwsgi_temp_path {run}/nginx-uwsgi;
    scgi_temp_path {run}/nginx-scgi;
    # the nginx-default profile's real_config
    proxy_cache_path {run}/nginx-cache keys_zone=app:10m;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {origin};
            proxy_cache app;
        }}
    }}
}}
"""


def start(product: str, sup: Supervisor, origin: str) -> str:
    """Start `product` in front of `origin`; its base URL once it accepts connections."""
    binary = shutil.which(product, path=f"/usr/sbin:{os.environ.get('PATH', '')}")
    if binary is None:
        raise ComponentError(product, f"not installed: apt-get install -y {product}")
    run = sup.run_dir / product
    run.mkdir()
    port = free_port()
    values = {"run": run, "port": port, "origin": origin, "origin_port": urlsplit(origin).port}
    conf = run / f"{product}.conf"
    if product == "squid":
        conf.write_text(SQUID_CONF.format(**values), "utf-8")
        # Squid drops to user proxy: its folder must be writable by it.
        shutil.chown(run, "proxy", "proxy")
        check = subprocess.run([binary, "-k", "parse", "-f", str(conf)], capture_output=True)
        if check.returncode != 0:
            raise ComponentError(product, "rejected its config", check.stderr.decode()[-2000:])
        proc = sup.add(product, [binary, "-N", "-f", str(conf)])
    else:
        conf.write_text(NGINX_CONF.format(**values), "utf-8")
        proc = sup.add(product, [binary, "-p", str(run), "-c", str(conf)])
    sup.wait_until(proc, lambda: _accepts("127.0.0.1", port), f"127.0.0.1:{port} to accept")
    return f"http://127.0.0.1:{port}"


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def version(product: str) -> str:
    flag = "-v"
    done = subprocess.run(
        [shutil.which(product, path="/usr/sbin") or product, flag], capture_output=True, text=True
    )
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else product
