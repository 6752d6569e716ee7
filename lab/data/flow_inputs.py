"""The inputs of a flow that its model does not hold: a Procfile's commands, a CA file, and
the request lines and JSON given as options (lab/data/flows.py uses them and re-exports them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from lab.data.errors import BadInput
from lab.data.paths import relative


class FlowFiles(Protocol):
    """What check_files reads of a Flow (lab/data/flows.py imports this module)."""

    app: Any

    @property
    def cwd(self) -> Path: ...
    @property
    def base_dir(self) -> Path: ...
    @property
    def makes_certificate(self) -> bool: ...
    @property
    def cacert(self) -> Path | None: ...


def check_files(flow: FlowFiles, where: str, given: set[str] = frozenset()) -> None:
    """What a model cannot check alone: the folder to run in and the Procfile exist, the CA
    file holds a CA."""
    if flow.app.started_by_lab and not flow.cwd.is_dir():
        raise BadInput(f"{where}: field 'app.cwd': no such folder {relative(flow.cwd)}")
    if flow.app.procfile is not None:
        procfile = flow.base_dir / flow.app.procfile
        procfile_commands(procfile, where)
        if flow.makes_certificate and flow.app.cacert is not None:
            raise BadInput(
                f"{where}: field 'app.cacert': the Procfile asks for {{certfile}}/{{keyfile}} "
                "(a certificate the lab makes): give one or the other, not both"
            )
    if flow.cacert is not None:
        named = "--cacert" if "app.cacert" in given else f"{where}: field 'app.cacert':"
        problem = ca_file_problem(flow.cacert)
        if problem:
            raise BadInput(f"{named} {relative(flow.cacert)}: {problem}")


def procfile_commands(path: Path, where: str = "") -> list[tuple[str, str]]:
    """A Procfile's (name, command) lines, `web` first; BadInput when it has none or no web."""
    label = where or relative(path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise BadInput(f"{label}: field 'app.procfile': cannot read it: {exc}") from None
    entries: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise BadInput(f"{relative(path)}:{number}: not a 'name: command' line: {line!r}")
        entries.append((name.strip(), command.strip()))
    web = [entry for entry in entries if entry[0] == "web"]
    if not web:
        raise BadInput(f"{relative(path)}: no 'web:' line (the web server on $PORT)")
    return web + [entry for entry in entries if entry[0] != "web"]


def ca_file_problem(path: Path) -> str | None:
    """Why `path` is no CA file a TLS client can verify with, or None."""
    import ssl

    from cryptography import x509

    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        return "no PEM certificate in it (a CA file is one or more BEGIN CERTIFICATE blocks)"
    if not certificates:
        return "no PEM certificate in it"
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        return f"not usable as a CA file ({exc})"
    return None


def parse_request_line(text: str, what: str) -> tuple[str, str]:
    """'POST /tasks' (or just '/tasks') as (method, path); BadInput naming the option."""
    words = text.split()
    if len(words) == 1:
        words = ["", words[0]]
    if len(words) != 2 or not words[1].startswith("/"):
        raise BadInput(f"{what}: expected 'METHOD /path', got {text!r}")
    return words[0].upper(), words[1]


def parse_json_option(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadInput(f"{what}: not JSON: {exc}") from None
