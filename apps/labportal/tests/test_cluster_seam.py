"""The portal reaches the cluster only through slidestore's client SDK, and /readyz says
not ready (with the reason) while there is no usable cluster; /healthz stays 200."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import labportal
from slidestore import tokens
from slidestore.client import MintedTokens
from slidestore.errors import Forbidden
from slidestore.tokens import Operation

from .conftest import portal_settings
from .helpers import Portal

HTTP_CLIENTS = {"httpx", "aiohttp", "requests", "urllib3", "urllib.request", "http.client"}
ALLOWED = {
    # A visitor stand-in: it drives the portal's own API and fetches tiles with the
    # viewer's token, as a browser does; the portal process never imports it.
    "demo.py",
}


def _runtime_imports(tree: ast.Module) -> set[str]:
    """Modules imported outside ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _speaks_http(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in HTTP_CLIENTS)


def test_no_portal_module_speaks_http_to_the_cluster_but_through_the_sdk() -> None:
    root = Path(labportal.__file__).parent
    offenders: dict[str, set[str]] = {}
    checked = 0
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        imports = _runtime_imports(ast.parse(path.read_text(), str(path)))
        checked += 1
        clients = {m for m in imports if _speaks_http(m)}
        if clients and relative not in ALLOWED:
            offenders[relative] = clients
    assert checked > 30
    assert offenders == {}, f"HTTP clients outside the SDK: {offenders}"
    # The seam the check relies on: the cluster module is built on the SDK.
    cluster = _runtime_imports(ast.parse((root / "cluster.py").read_text()))
    assert "slidestore.client" in cluster
    # And the check can fail: a module importing httpx is caught.
    assert _runtime_imports(ast.parse("import httpx\nfrom aiohttp import web")) == {
        "httpx",
        "aiohttp",
    }
    assert not _runtime_imports(
        ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import httpx\n")
    ) - {"typing"}


def test_minted_tokens_are_the_narrowest_for_each_request() -> None:
    secret = tokens.new_secret()
    mint = MintedTokens(secret, "labportal", {Operation.READ}, ttl=60)
    blob = "a" * 64
    usual = tokens.verify(secret, mint() or "")
    assert usual.ops == {Operation.READ} and usual.sub == "labportal"
    download = tokens.verify(secret, mint({Operation.DOWNLOAD}, blob) or "")
    download.require(Operation.DOWNLOAD, blob)
    with pytest.raises(Forbidden):
        download.require(Operation.DOWNLOAD, "b" * 64)  # another blob
    with pytest.raises(Forbidden):
        download.require(Operation.DELETE, blob)  # the next wider use
    assert mint({Operation.DOWNLOAD}, blob) == mint({Operation.DOWNLOAD}, blob)  # reused


@pytest.mark.asyncio
async def test_readyz_without_a_cluster_is_503_with_the_reason(database_url: str) -> None:
    async with Portal.running(portal_settings(database_url)) as portal:
        client = portal.client()
        live = await client.get("/healthz")
        assert live.status_code == 200 and live.json() == {"status": "ok"}
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable" and body["checks"]["database"] == "ok"
    assert "no slide cluster is configured" in body["checks"]["coordinator"]


@pytest.mark.asyncio
async def test_readyz_with_an_unreachable_coordinator_is_503(database_url: str) -> None:
    settings = portal_settings(
        database_url, cluster_url="http://127.0.0.1:9", cluster_secret=tokens.new_secret()
    )
    async with Portal.running(settings) as portal:
        client = portal.client()
        ready = await client.get("/readyz")
        live = await client.get("/healthz")
    assert live.status_code == 200
    assert ready.status_code == 503
    coordinator = ready.json()["checks"]["coordinator"]
    assert coordinator.startswith("error: ") and "configured" not in coordinator
