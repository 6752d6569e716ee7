"""The page itself in a real browser: Chromium, driven by Playwright, as the lab's client.

Three parts: `host` launches the browser (one Chromium and its event loop for a run), `page`
drives one user's page in it (`client.BrowserClient` is that user, as the runner sees it), and
`recorder` turns the page's DevTools network events into polls, with no browser needed.
"""

from lab.clients.browser.client import BrowserClient
from lab.clients.browser.host import (
    CHROMIUM_FLAGS,
    BrowserHost,
    chromium_executable,
    playwright_missing,
    unavailable,
)
from lab.clients.browser.recorder import BrowserPoll, NetworkRecorder

__all__ = [
    "CHROMIUM_FLAGS",
    "BrowserClient",
    "BrowserHost",
    "BrowserPoll",
    "NetworkRecorder",
    "chromium_executable",
    "playwright_missing",
    "unavailable",
]
