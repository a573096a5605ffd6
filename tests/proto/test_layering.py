"""The shape of the code that the layering promises: a pure core, small files, one module per XEP."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "xmppauth" / "proto"
CORE_MODULES = sorted(PROTO.rglob("*.py"))
FORBIDDEN = ("django", "asyncio", "channels", "twisted", "daphne", "sessions_acl", "accounts")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_imports_no_framework_and_no_upper_layer(path: Path) -> None:
    upper = {
        name
        for name in _imports(path)
        if name.startswith("xmppauth") and not name.startswith("xmppauth.proto")
    }
    bad = upper | {name for name in _imports(path) if name.split(".")[0] in FORBIDDEN}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_importing_the_stream_loads_no_framework() -> None:
    """Checked in a fresh interpreter: not even indirectly (through a package __init__, say)."""
    code = (
        "import sys; import xmppauth.proto.stream; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert (
        "xmppauth.proto.rfc6120_sasl"
        in subprocess.run(
            [sys.executable, "-c", "import sys, xmppauth.proto.stream; print(list(sys.modules))"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )  # the probe sees the modules the stream loads (it is not blind)


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_core_file_is_over_700_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 700


@pytest.mark.parametrize(
    "number",
    ["0030", "0198", "0199", "0280", "0352", "0386", "0388", "0474", "0480", "0484"],
)
def test_each_xep_the_core_speaks_is_found_by_its_number(number: str) -> None:
    (module,) = PROTO.glob(f"xep{number}_*.py")
    first_line = module.read_text().splitlines()[0]
    assert first_line.startswith(f'"""XEP-{number} '), first_line


def test_every_core_module_says_what_it_is_on_its_first_line() -> None:
    for path in CORE_MODULES:
        first = path.read_text().splitlines()[0]
        assert first.startswith('"""'), path
        assert len(first) > 10, path


#: The portal's web layer: views and URLs, above both apps (they show grants, sessions and factors side by
#: side and call the doors of both). Nothing below them imports them.
WEB_LAYER = ("accounts/views/", "accounts/urls.py", "sessions_acl/views.py", "sessions_acl/urls.py",
             "sessions_acl/portal_live.py")  # fmt: skip


def _web(path: Path) -> bool:
    return str(path.relative_to(ROOT)).startswith(WEB_LAYER)


def test_accounts_import_nothing_of_grants_and_sessions() -> None:
    """accounts sits below sessions_acl: a password change is announced (accounts.signals), and
    sessions_acl reacts. Migrations included: they are code of the app too. The portal's views are
    the web layer above both (:data:`WEB_LAYER`)."""
    files = sorted(path for path in (ROOT / "accounts").rglob("*.py") if not _web(path))
    assert any(path.name == "models.py" for path in files)
    assert not any(path.name == "apppasswords.py" for path in files)  # the views are left out, not missed
    for path in files:
        upward = {name for name in _imports(path) if name.split(".")[0] in ("sessions_acl", "xmppauth")}
        # below accounts: the pure core; beside it: the project's database set-up (for commands)
        allowed = {name for name in upward if name.startswith("xmppauth.proto") or name == "xmppauth.dbsetup"}
        assert upward <= allowed, f"{path.relative_to(ROOT)} imports {sorted(upward - allowed)}"


def test_nothing_below_the_web_layer_imports_it() -> None:
    """The apps' models, flows and commands, and the XMPP server, never import the portal's views."""
    web_modules = {
        "accounts.views",
        "accounts.urls",
        "sessions_acl.views",
        "sessions_acl.urls",
        "sessions_acl.portal_live",
    }
    for app in ("accounts", "sessions_acl", "xmppauth"):
        for path in sorted((ROOT / app).rglob("*.py")):
            if _web(path) or path.name in ("urls.py", "asgi.py", "admin_site.py"):
                continue  # the project's URLconf, ASGI routing and admin site wire the web layer in
            found = {name for name in _imports(path) if name.startswith(tuple(web_modules))}
            assert not found, f"{path.relative_to(ROOT)} imports the web layer: {sorted(found)}"
