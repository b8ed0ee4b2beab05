"""The portal against its browser baseline — Chrome, Firefox and Edge, each current and two versions back, and Safari
12 and later (the browserslist in tests/web/package.json) — and against axe-core's accessibility rules.

Static checks: ESLint parses the portal's scripts as ES2017 classic scripts (Safari 12 parses no less) and
eslint-plugin-compat flags any browser API the baseline lacks; Stylelint with stylelint-no-unsupported-browser-features
does the same for the stylesheets. Accessibility: axe-core, injected into each page as served (under its strict
Content-Security-Policy) in Chromium, Firefox ESR and WebKitGTK, finds no violation of impact serious or critical.

The tools come from npm, pinned in tests/web/package-lock.json and installed there by `npm ci` once per run (not at
all while tests/web/node_modules is current with the lock file). Without node and npm the tests are skipped, or fail
when ZOOMCAL_REQUIRE_BROWSERS is set (as in CI)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from datetime import date, timedelta
from functools import cache
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from browsers import SCRIPT_TIMEOUT, settle
from test_portal_browsers import portal, sign_in, wait_for  # noqa: F401 (portal: the module fixture, reused)
from zoomcal.app import signin
from zoomcal.app import sync as app_sync

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "tests" / "web"
STATIC = ROOT / "src" / "zoomcal" / "web" / "static"
NODE_MIN = (20, 19)  # what ESLint 10 and Stylelint 17 need
STAMP = ".zoomcal-installed"  # in node_modules: the digest of the package files it was installed from
# the tools' environment: the browser data stays as locked (no nagging that it has aged), no colours in the output
TOOL_ENV = {**os.environ, "BROWSERSLIST_IGNORE_OLD_DATA": "1", "FORCE_COLOR": "0", "NO_COLOR": "1",
            "NPM_CONFIG_UPDATE_NOTIFIER": "false"}
AXE_TIMEOUT = 60  # seconds for one axe run (WebKitGTK on a busy machine is the slowest)
_MONDAY = (date.today() + timedelta(days=7 - date.today().weekday())).isoformat()
PAGES = ("/", "/contacts", "/contacts?q=gr", "/log", "/schedule", f"/schedule?find=1&from={_MONDAY}&to={_MONDAY}",
         "/accounts", "/accounts?provider=caldav", "/availability", "/audit")
SERIOUS = ("serious", "critical")


def _missing(reason: str):
    if os.environ.get("ZOOMCAL_REQUIRE_BROWSERS"):
        pytest.fail(f"the browser-baseline tools are required (ZOOMCAL_REQUIRE_BROWSERS is set) but {reason}",
                    pytrace=False)
    pytest.skip(f"{reason} (apt-get install nodejs npm)")


def _node_version(node: str) -> tuple[int, ...]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    try:
        return tuple(int(part) for part in out.lstrip("v").split(".")[:2])
    except ValueError:
        return ()


@pytest.fixture(scope="session")
def web_tools() -> Path:
    """tests/web/node_modules, installed by `npm ci` from the lock file unless it is current with it already. A lock
    on package-lock.json keeps two test runs in this tree from installing at once."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        _missing(" and ".join(name for name, path in (("node", node), ("npm", npm)) if not path) + " not on PATH")
    if _node_version(node) < NODE_MIN:
        _missing(f"node {'.'.join(map(str, NODE_MIN))} or later is needed, {node} is older")
    lock = WEB / "package-lock.json"
    modules = WEB / "node_modules"
    with lock.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        digest = hashlib.sha256(lock.read_bytes() + (WEB / "package.json").read_bytes()).hexdigest()
        stamp = modules / STAMP
        if not (stamp.exists() and stamp.read_text() == digest):
            try:
                done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, env=TOOL_ENV,
                                      capture_output=True, text=True, timeout=600)
            except subprocess.TimeoutExpired:
                pytest.fail("npm ci in tests/web took more than 10 minutes", pytrace=False)
            if done.returncode:
                pytest.fail(f"npm ci in tests/web failed ({done.returncode}):\n{done.stdout}\n{done.stderr}",
                            pytrace=False)
            stamp.write_text(digest)
    return modules


def tool(modules: Path, name: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run one of the installed tools from the repository's root (paths in its output are relative to it)."""
    return subprocess.run([str(modules / ".bin" / name), *args], cwd=ROOT, env=TOOL_ENV, input=stdin,
                          capture_output=True, text=True, timeout=120)


def eslint(modules: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return tool(modules, "eslint", "--config", str(WEB / "eslint.config.cjs"), "--max-warnings", "0", *args,
                stdin=stdin)


def stylelint(modules: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return tool(modules, "stylelint", "--config", str(WEB / "stylelint.config.cjs"), "--max-warnings", "0", *args,
                stdin=stdin)


def _relative(paths) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in sorted(paths)]


def test_the_scripts_are_within_the_baseline(web_tools):
    scripts = _relative(STATIC.glob("*.js"))
    assert scripts
    done = eslint(web_tools, *scripts)
    assert done.returncode == 0, f"ESLint:\n{done.stdout}{done.stderr}"


def test_the_stylesheets_are_within_the_baseline(web_tools):
    sheets = _relative(STATIC.glob("*.css"))
    assert sheets
    done = stylelint(web_tools, *sheets)
    assert done.returncode == 0, f"Stylelint:\n{done.stdout}{done.stderr}"


PROBE_JS = str((STATIC / "probe.js").relative_to(ROOT))  # a name only: the text comes on standard input
PROBE_CSS = str((STATIC / "probe.css").relative_to(ROOT))


@pytest.mark.parametrize("code, expected", [
    ("window.x = window.a?.b;", "Parsing error"),                      # ES2020, Safari 13.1
    ("window.x = window.a ?? 1;", "Parsing error"),                    # ES2020, Safari 13.1
    ("window.x = 1n;", "Parsing error"),                               # ES2020, Safari 14
    ("window.x = structuredClone({});", "structuredClone is not supported in Safari 12"),   # Safari 15.4
    ("new IntersectionObserver(function () {});", "IntersectionObserver is not supported in Safari 12"),
], ids=["optional-chaining", "nullish", "bigint", "structuredClone", "IntersectionObserver"])
def test_the_script_check_catches_what_safari_12_lacks(web_tools, code, expected):
    """The configuration checks what it should: a script beside the portal's with one thing the baseline lacks."""
    done = eslint(web_tools, "--format", "json", "--stdin", "--stdin-filename", PROBE_JS,
                  stdin=f'(function () {{\n  "use strict";\n  {code}\n}}());\n')
    assert done.returncode == 1, done.stdout + done.stderr
    messages = [m["message"] for r in json.loads(done.stdout) for m in r["messages"]]
    assert any(expected in m for m in messages), messages


@pytest.mark.parametrize("css, feature", [
    (".a { display: flex; gap: 4px; }", "flexbox-gap"),                       # Safari 14.1
    (".a:focus-visible { outline: 0; }", "css-focus-visible"),                # Safari 15.4
], ids=["flexbox-gap", "focus-visible"])
def test_the_stylesheet_check_catches_what_safari_12_lacks(web_tools, css, feature):
    done = stylelint(web_tools, "--formatter", "json", "--stdin-filename", PROBE_CSS, stdin=css + "\n")
    assert done.returncode == 2, done.stdout + done.stderr
    report = json.loads(done.stdout or done.stderr)
    texts = [w["text"] for r in report for w in r["warnings"]]
    assert any(f'"{feature}"' in t and "Safari 12" in t for t in texts), texts


@cache
def axe_source(modules: Path) -> str:
    return (modules / "axe-core" / "axe.min.js").read_text(encoding="utf-8")


LISTEN = """
window.__zoomcalCsp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__zoomcalCsp.push(e.violatedDirective + " " + (e.blockedURI || "") + " " + (e.sourceFile || ""));
});
"""

RUN = """
var done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ["violations"]}).then(function (r) {
  done({violations: r.violations.map(function (v) {
    return {id: v.id, impact: v.impact, help: v.help, url: v.helpUrl, nodes: v.nodes.map(function (n) {
      return {target: n.target.join(" "), html: n.html, summary: n.failureSummary};
    })};
  }), csp: window.__zoomcalCsp});
}, function (e) { done({error: String(e && e.stack || e)}); });
"""


def audit(driver, modules: Path, label: str) -> list[dict]:
    """axe-core's violations on the page the driver shows. The script goes in through WebDriver (a script element
    would be refused by the page's policy) and must then work under that policy: no violation of it is reported.
    That means something in WebKitGTK, which holds WebDriver's scripts to the page's policy (eval and new Function
    throw there); Chromium and Firefox let them eval."""
    settle(driver)
    driver.execute_script(LISTEN)
    loaded = driver.execute_script(axe_source(modules) + "\nreturn typeof window.axe === 'object' && "
                                   "typeof window.axe.run === 'function' ? window.axe.version : null;")
    assert loaded, f"{label}: axe-core did not load"
    driver.set_script_timeout(AXE_TIMEOUT)
    try:
        result = driver.execute_async_script(RUN)
    finally:
        driver.set_script_timeout(SCRIPT_TIMEOUT)
    assert "error" not in result, f"{label}: axe-core failed: {result.get('error')}"
    assert result["csp"] == [], f"{label}: the page's policy refused something axe-core did: {result['csp']}"
    return [dict(v, page=label) for v in result["violations"]]


def report(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['page']}: {v['id']} — {v['help']} ({v['url']})")
        for n in v["nodes"]:
            lines.append(f"    {n['target']}: {n['html']}")
            lines.extend(f"      {line}" for line in (n["summary"] or "").splitlines())
    return "\n".join(lines)


def test_no_serious_accessibility_violations(browser, portal, web_tools):  # noqa: F811
    ctx, server, skewed = portal
    app_sync.note(ctx, "note", "the accessibility check looked at the log", email="ada@example.com")
    found = []
    browser.get(f"{server.url}/login")
    found += audit(browser, web_tools, "/login")
    browser.find_element(By.ID, "email").send_keys("ada@example.com")
    browser.find_element(By.ID, "password").send_keys("not the password")
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "login-error"), "no refusal shown")
    assert signin.WRONG in browser.find_element(By.ID, "login-error").text
    found += audit(browser, web_tools, "/login (refused)")
    sign_in(browser, server.url)
    for page in PAGES:
        browser.get(f"{server.url}{page}")
        found += audit(browser, web_tools, page)
    browser.get(f"{skewed.url}/")             # the clock warning shown (cookies are per host: still signed in)
    if "/login" in browser.current_url:
        sign_in(browser, skewed.url)
    wait_for(browser, lambda d: d.find_element(By.ID, "clock-drift").is_displayed(), "no clock warning")
    found += audit(browser, web_tools, "/ (clock warning)")
    # and the check sees: a field without a label, added to the page, is reported
    browser.execute_script("document.getElementById('main').appendChild(document.createElement('input'));")
    assert [v["id"] for v in audit(browser, web_tools, "probe") if v["impact"] in SERIOUS] == ["label"]
    serious = [v for v in found if v["impact"] in SERIOUS]
    assert not serious, f"{len(serious)} serious or critical in {browser.name}:\n{report(serious)}\n\n" \
                        f"all found:\n{report(found)}"
