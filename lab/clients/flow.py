"""The user's own page, for `lab audit`: the lab's Python twin of the page (PollingClient),
with the user's flow plugged in: how the work is started, where its id is, the status URL, and
which answers end the polling.

The client strategies are the lab's client-side fixes (strategies.json: `nonce`,
`path-nonce`, `post`, `request-no-cache`) laid over the user's status request; `app` is the
user's own polling as the flow describes it (a plain request, the flow's retries). A
`DirectPoller` polls the same task straight at the app: the ground truth of when it finished.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from lab.clients.poll import Poll
from lab.clients.polling import PollingClient, http_error
from lab.data.flows import APP_POLLING, Flow, dig
from sample_app.strategies import Retry, StrategyBook


def state_text(value: Any) -> str:
    """A state as the page would show it: strings as they are, other JSON values as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def task_id_from(flow: Flow, response: httpx.Response) -> str:
    """The task id in the start answer, or ValueError saying where it was not."""
    header = flow.start.id_header
    if header is not None:
        location = response.headers.get(header)
        if not location:
            raise ValueError(f"the start answer has no {header} header")
        last = urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]
        if not last:
            raise ValueError(f"the start answer's {header} {location!r} ends in no id")
        return last
    try:
        body = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise ValueError(
            f"the start answer is not JSON ({kind}: {response.text[:80]!r}), so no task id at "
            f"{flow.start.task_id!r}"
        ) from None
    try:
        value = dig(body, flow.start.task_id)
    except KeyError as missing:
        raise ValueError(
            f"no task id at {flow.start.task_id!r} in the start answer (no {missing}): "
            f"{response.text[:120]}"
        ) from None
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
        raise ValueError(f"the task id at {flow.start.task_id!r} is {value!r}, not a string")
    return str(value)


@dataclass(kw_only=True, eq=False, repr=False)
class FlowClient(PollingClient):
    """One user of the user's app, through a proxy (or none). With `given_task_id`, it does not
    start any work but polls that task (the direct poller)."""

    flow: Flow
    given_task_id: str | None = None
    retries: int | None = None  # the app's own polling: the flow's; a client fix: its own
    start_answer: dict[str, Any] = field(default_factory=dict)

    kind = "python"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.retries is not None:
            # The app's own page tolerates the flow's failed polls in a row, with the lab's
            # usual backoff (a fix's own retries are the catalogue's).
            self.strategy = dataclasses.replace(
                self.strategy, retry=Retry(attempts=self.retries, initial_ms=250, factor=2)
            )
        self._raw_states: dict[int, Any] = {}
        # The first status answer as the app sent it (status, every header, body): what the
        # audit lints. Only the direct poller's is the app's own; a proxy's may be changed.
        self.first_answer: tuple[int, list[tuple[str, str]], bytes] | None = None

    def _start_task(self) -> None:
        self.ui_state = "running"
        self.started_at = time.time()
        if self.given_task_id is not None:
            self.task_id = self.given_task_id
            return
        start = self.flow.start
        response = self._http.request(
            start.method,
            f"{self.base_url}{start.path}",
            json=start.json_body,
            headers=start.headers,
            extensions=self._extensions,
        )
        self.log("start", status=response.status_code, body=response.text[:500])
        self.start_answer = {
            "status": response.status_code,
            "headers": list(response.headers.multi_items()),
        }
        if not response.is_success:
            raise RuntimeError(http_error(response))
        self.task_id = task_id_from(self.flow, response)

    # -- one request at a time, on the caller's thread (the audit's trial of the flow)
    def start_once(self) -> None:
        """Start the work (or take the given task id); RuntimeError for an HTTP failure,
        ValueError for an answer with no task id where the flow says, httpx.HTTPError when
        the app did not answer."""
        self._start_task()

    def poll_once(self) -> Poll:
        return self._poll_once(retry=0)

    def close(self) -> None:
        self._http.close()

    def _status_url(self) -> str:
        path = self.flow.status_path(self._task())
        nonce = self.nonce_kind
        if nonce == "path":
            base, sep, query = path.partition("?")
            path = f"{base.rstrip('/')}/{secrets.token_hex(8)}{sep}{query}"
        elif nonce == "query":
            path += f"{'&' if '?' in path else '?'}nonce={secrets.token_hex(8)}"
        return f"{self.base_url}{path}"

    def _read_answer(self, poll: Poll, answer: str | dict[str, Any]) -> dict[str, Any] | None:
        status = self.flow.status
        try:
            body = json.loads(answer) if isinstance(answer, str) else answer
            value = dig(body, status.state_at)
        except ValueError as exc:
            poll.error = f"unreadable status answer (not JSON: {exc})"
            return None
        except KeyError as missing:
            poll.error = f"no state at {status.state_at!r} in the status answer (no {missing})"
            return None
        poll.state = state_text(value)
        self._raw_states[poll.seq] = value
        if status.task_id:
            try:
                poll.task_id = str(dig(body, status.task_id))
            except KeyError:
                poll.task_id = None
            if poll.task_id is not None and self.task_id and poll.task_id != self.task_id:
                poll.foreign_task_id = poll.task_id
        return body if isinstance(body, dict) else {"value": body}

    def _handle_answer(self, poll: Poll) -> bool:
        if poll.foreign_task_id is not None:
            self.foreign_task_id = poll.foreign_task_id
            self.show_final("leaked", poll.received_at, foreign_task_id=poll.foreign_task_id)
            return True
        value = self._raw_states.get(poll.seq)
        if poll.state is not None and self.flow.status.is_final(value):
            failed = self.flow.status.is_failure(value)
            self.show_final(
                "errored" if failed else "completed", poll.received_at, state=poll.state
            )
            return True
        return False

    def is_final(self, poll: Poll) -> bool:
        return poll.foreign_task_id is not None or self.flow.status.is_final(
            self._raw_states.get(poll.seq)
        )

    def _poll(self, url: str, response: httpx.Response | None, **details: Any) -> Poll:
        if self.first_answer is None and response is not None and response.is_success:
            self.first_answer = (
                response.status_code,
                list(response.headers.multi_items()),
                response.content,
            )
        return super()._poll(url, response, **details)


def build_client(
    flow: Flow,
    book: StrategyBook,
    strategy: str,
    *,
    base_url: str,
    proxy_url: str | None,
    log_path: Any,
    given_task_id: str | None = None,
    retries: int | None = None,
    verify: Any = None,
) -> FlowClient:
    """A client polling the flow with one client strategy (`app` or a client fix); `retries`
    overrides the failed polls in a row it tolerates; `verify`: the CAs an HTTPS app's
    poller trusts (an ssl.SSLContext, lab/runs/audit_tls.py)."""
    own = strategy == APP_POLLING
    if retries is None and own:
        retries = flow.polling.retries
    return FlowClient(
        base_url=base_url,
        proxy_url=proxy_url,
        book=book,
        strategy=book.get("none" if own else strategy),
        poll_interval=flow.polling.interval_s,
        task_duration=0.0,
        log_path=log_path,
        flow=flow,
        given_task_id=given_task_id,
        retries=retries,
        verify=verify,
    )
