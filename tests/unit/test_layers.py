"""The layout's rules, checked on the source: imports go downward, audit lines come from services.

README "Where things live": the factory assembles the surfaces (api, oauth, pages, probes), a
surface uses the protocol and the services, the services use the models. An audit event is
written by the service that acts, never by a view, the CLI or the Authlib adapter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

IDP = Path(__file__).resolve().parents[2] / "idp"
SURFACES = ("idp.api", "idp.oauth", "idp.pages", "idp.probes", "idp.http", "idp.cli")
# Modules outside idp/services that act on their own and so write their own events.
WRITES_AUDIT = {"idp/rate_limits.py"}  # the route limiter answers 429 itself


def modules(folder: str) -> list[Path]:
    return sorted((IDP / folder).rglob("*.py"))


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("folder", ["services", "models"])
def test_services_and_models_import_no_surface(folder):
    for path in modules(folder):
        upward = {name for name in imported(path) if name.startswith(SURFACES)}
        assert upward == set(), f"{path.relative_to(IDP.parent)} imports {sorted(upward)}"


def test_models_import_no_service():
    for path in modules("models"):
        upward = {name for name in imported(path) if name.startswith("idp.services")}
        assert upward == set(), f"{path.relative_to(IDP.parent)} imports {sorted(upward)}"


def test_audit_events_are_written_by_the_services_that_act():
    writers = set()
    for path in sorted(IDP.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "record"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "audit"
            ):
                writers.add(str(path.relative_to(IDP.parent)))
    outside = {w for w in writers if not w.startswith("idp/services/")} - WRITES_AUDIT
    assert outside == set()
    assert "idp/services/accounts.py" in writers  # the check finds what it looks for


def test_services_do_not_read_the_request():
    # The caller passes the address, user agent and clock (STYLE.md, convention 3).
    for path in modules("services"):
        assert "flask.request" not in imported(path), path.relative_to(IDP.parent)
