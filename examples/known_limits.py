"""Why the examples' fix is not a header alone: what `Cache-Control: no-store` on the status
answer cannot get through, from the lab's own scenario files (`lab audit` prints the same under
"which fix you need"; tests/test_examples.py checks this table against them). The fixed flows
(`audit-fixed.toml`) add the story's own fix, a fresh nonce path segment on every poll, and
retries, and complete behind every profile, these four included.
"""

NO_STORE_IS_NOT_ENOUGH = {
    "legacy-http10": "an HTTP/1.0 cache reads no Cache-Control: it keeps the answer anyway",
    "nginx-ignore-headers": "proxy_ignore_headers Cache-Control Expires: every 200 kept 1 min",
    "squid-override": "refresh_pattern ... ignore-no-store: Squid keeps the answer anyway",
    "idle-timeout": "the page does not retry a poll the proxy cut off ([polling] retries = 0)",
}
