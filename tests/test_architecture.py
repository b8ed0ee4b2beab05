"""The layers keep their shape: the CLI holds no database access, provider names stay in their own folders, and the
application layer's messages name no command-line syntax."""

from __future__ import annotations

import ast
from pathlib import Path

from zoomcal.connectors import registry

SRC = Path(__file__).resolve().parents[1] / "src" / "zoomcal"


def _modules(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        yield path, ast.parse(path.read_text("utf-8"), str(path))


def test_the_cli_holds_no_database_access():
    found = []
    for path, tree in _modules(SRC / "cli"):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                found += [f"{path.name}: imports {n}" for n in names
                          if n.startswith(("sqlalchemy", "zoomcal.store", "zoomcal.sync", "zoomcal.connectors"))]
            if isinstance(node, ast.Attribute) and node.attr in ("session", "transaction", "locked_transaction",
                                                                  "execute", "scalars", "scalar"):
                found.append(f"{path.name}:{node.lineno}: .{node.attr}")
            if isinstance(node, ast.Name) and node.id in ("select", "Session"):
                found.append(f"{path.name}:{node.lineno}: {node.id}")
    assert found == []


def _provider_folders() -> dict[str, Path]:
    folders = {}
    for spec in registry.all_specs():
        module = spec.link.__module__
        folders[spec.key] = SRC / Path(*module.split(".")[1:-1])
    return folders


def _named(node: ast.AST) -> list[str]:
    """String constants a comparison tests against (`x == "a"`, `x in ("a", "b")`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [n for e in node.elts for n in _named(e)]
    return []


def test_provider_names_appear_only_in_their_own_folders():
    """Nothing outside a provider's folder (and the registry's import list) branches on a provider's name: no
    comparison with it, no case for it. The sandboxes are emulations of the vendors themselves and are exempt."""
    folders = {**_provider_folders(), "memory": SRC / "connectors" / "memory"}
    assert set(folders) >= {"zoom", "zoom-calendar", "google", "graph", "ews", "caldav", "ics", "memory"}
    found = []
    for path, tree in _modules(SRC):
        if "sandbox" in path.parts or path == SRC / "connectors" / "registry.py":
            continue
        others = {key for key, folder in folders.items() if folder not in path.parents}
        for node in ast.walk(tree):
            tested = []
            if isinstance(node, ast.Compare):
                tested = [n for part in (node.left, *node.comparators) for n in _named(part)]
            elif isinstance(node, ast.MatchValue):
                tested = _named(node.value)
            found += [f"{path.relative_to(SRC)}:{node.lineno}: {name!r}" for name in tested if name in others]
    assert found == []


def test_a_branch_on_a_provider_name_would_be_found(tmp_path):
    """The check above can fail: the shapes of branch it looks for are found."""
    tree = ast.parse('if account.provider == "google": pass\nif p in ("ics", "x"): pass\n'
                     'match p:\n    case "graph": pass\n')
    tested = [n for node in ast.walk(tree) if isinstance(node, ast.Compare)
              for part in (node.left, *node.comparators) for n in _named(part)]
    tested += [n for node in ast.walk(tree) if isinstance(node, ast.MatchValue) for n in _named(node.value)]
    assert {"google", "ics", "graph"} <= set(tested)


def test_every_built_in_provider_lives_in_one_folder_named_in_the_registry():
    for name in registry.BUILT_IN:
        folder = SRC / Path(*name.split(".")[1:])
        assert (folder / "__init__.py").exists() and (folder / "spec.py").exists(), name
    for key, folder in _provider_folders().items():
        assert folder.parent == SRC / "connectors", key


def test_application_messages_name_no_command_line_syntax():
    """The portal shows the same errors: a message says what is wrong, a door adds how to fix it there."""
    found = []
    for folder in (SRC / "app", SRC / "connectors"):
        for path, tree in _modules(folder):
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    text = node.value
                    if "`zoomcal " in text or "zoomcal account" in text or " --" in text or text.startswith("--"):
                        found.append(f"{path.relative_to(SRC)}:{node.lineno}: {text[:60]!r}")
    assert found == []


def test_the_sandboxes_use_none_of_the_code_they_check():
    """The sandboxes are the oracle the sync is checked against: they answer as the vendors do with their own code,
    so nothing under zoomcal.sandbox imports zoomcal's mapping, connectors or domain (or anything of zoomcal's
    outside the sandbox package, which could bring those in)."""
    found = []
    for path, tree in _modules(SRC / "sandbox"):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["zoomcal.sandbox"]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found += [f"{path.name}:{node.lineno}: imports {n}" for n in names
                      if (n == "zoomcal" or n.startswith("zoomcal.")) and not n.startswith("zoomcal.sandbox")]
    assert found == []


HEAVY = ("sqlalchemy", "alembic", "numpy", "httpx", "cryptography", "exchangelib", "zoomcal.app.context",
         "zoomcal.store.models")


def test_the_command_line_shows_its_help_without_loading_the_application_layer(tmp_path):
    """`zoomcal --help` (and a group's help) name every command but load what a command needs only when it runs."""
    import subprocess
    import sys

    probe = ("import atexit, sys\n"
             f"atexit.register(lambda: print('LOADED', [m for m in {HEAVY!r} if m in sys.modules]))\n"
             "from zoomcal.cli.main import app\n"
             "app(sys.argv[1:])\n")
    for args in (["--help"], ["contacts", "--help"], ["account", "add", "--help"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "Usage" in done.stdout and done.stdout.strip().endswith("LOADED []"), (args, done.stdout[-300:])
    # and a command that runs loads them on first use
    import os

    done = subprocess.run([sys.executable, "-c", probe, "user", "list"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ZOOMCAL_DATA_DIR": str(tmp_path)})
    assert "zoomcal init" in done.stderr and "'sqlalchemy'" in done.stdout


def test_naming_every_provider_loads_no_vendor_client_and_opening_the_application_no_numpy():
    """The registry lists Exchange without exchangelib (loaded when an Exchange account is used), and the
    application layer opens without numpy (loaded when availability is first computed: until then its module is
    a placeholder, and its own parts are not imported)."""
    probe = ("import sys\n"
             "from zoomcal.connectors import registry\n"
             "import zoomcal.app.context\n"
             "keys = [s.key for s in registry.all_specs()]\n"
             "assert 'ews' in keys and registry.get('ews').capabilities.incremental\n"
             "print(sorted(m for m in ('exchangelib', 'numpy._core') if m in sys.modules))\n"
             "from zoomcal.availability.index import merge, np\n"
             "merge(np.array([3, 1]), np.array([4, 2]))\n"
             "print('numpy._core' in sys.modules)\n")
    done = _fresh_python(probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "True"]


def test_a_module_loaded_on_first_use_is_imported_once_whichever_threads_ask():
    probe = ("import sys, threading\n"
             "from zoomcal.lazy import lazy\n"
             "colours = lazy('colorsys')\n"
             "before = 'colorsys' in sys.modules\n"
             "seen = []\n"
             "ask = lambda: seen.append(colours.rgb_to_hsv(1, 0, 0))\n"
             "threads = [threading.Thread(target=ask) for _ in range(16)]\n"
             "[t.start() for t in threads]; [t.join() for t in threads]\n"
             "print(before, len(seen), len(set(seen)), colours._module is sys.modules['colorsys'])\n")
    done = _fresh_python(probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "16", "1", "True"]


def _fresh_python(probe: str):
    """The probe run by a new interpreter (nothing loaded yet but what it loads)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)


def test_status_loads_neither_the_job_runners_nor_the_calendar_formats(tmp_path):
    """`zoomcal status` reads the store: the runners and what their jobs need (icalendar, procrastinate) load only
    in the processes that run jobs."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ZOOMCAL_DATA_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "zoomcal", "init"], capture_output=True, env=env, timeout=60, check=True)
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: print('LOADED', sorted(m for m in ('zoomcal.app.runner', 'icalendar', "
             "'procrastinate', 'zoomcal.app.context') if m in sys.modules)))\n"
             "from zoomcal.cli.main import app\n"
             "app(['status'])\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env)
    assert done.stdout.strip().endswith("LOADED ['zoomcal.app.context']"), (done.stdout[-300:], done.stderr[-300:])


def test_every_outbound_client_shares_the_processs_tls_context():
    """Making a TLS context reads the whole CA bundle (milliseconds of CPU): every httpx client zoomcal makes
    (not the sandboxes') passes `verify=tls()`, the one context of the process."""
    found = []
    for path, tree in _modules(SRC):
        if "sandbox" in path.parts:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("AsyncClient", "Client") and \
                    isinstance(node.func.value, ast.Name) and node.func.value.id == "httpx":
                verify = next((k.value for k in node.keywords if k.arg == "verify"), None)
                if not (isinstance(verify, ast.Call) and getattr(verify.func, "id", "") == "tls"):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert found == []
    from zoomcal.net import tls
    assert tls() is tls()
