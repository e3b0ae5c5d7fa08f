"""An in-process portal with as many logged-in users (httpx clients) as a test needs."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from litestar import Litestar

from labportal.app import create_app
from labportal.settings import Settings

PASSWORD = "correct horse battery"
BASE = "http://portal.test"


@dataclass
class User:
    client: httpx.AsyncClient
    id: str
    email: str
    csrf: str

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.get(url, **kw)

    async def post(self, url: str, json: Any = None, **kw: Any) -> httpx.Response:
        return await self.client.post(url, json=json, **kw)

    async def patch(self, url: str, json: Any = None, **kw: Any) -> httpx.Response:
        return await self.client.patch(url, json=json, **kw)

    async def delete(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.delete(url, **kw)


@dataclass
class Portal:
    app: Litestar
    settings: Settings
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, settings: Settings) -> AsyncIterator[Portal]:
        app = create_app(settings)
        portal = cls(app, settings)
        started, stop = asyncio.Event(), asyncio.Event()

        async def lifespan() -> None:
            # Entered and exited in one task (anyio cancel scopes require it; pytest-asyncio
            # may run a fixture's setup and teardown in different tasks).
            async with app.lifespan():
                started.set()
                await stop.wait()

        task = asyncio.create_task(lifespan())
        await asyncio.wait(
            [task, asyncio.create_task(started.wait())], return_when="FIRST_COMPLETED"
        )
        if task.done():
            task.result()
        try:
            yield portal
        finally:
            for client in portal.clients:
                await client.aclose()
            stop.set()
            await task

    def session(self) -> Any:
        """A database session outside any request (to age tokens, invitations...)."""
        return self.app.state.alchemy.get_session()

    def client(self, address: str = "127.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 1234))
        client = httpx.AsyncClient(transport=transport, base_url=BASE)
        self.clients.append(client)
        return client

    async def user(self, name: str = "user") -> User:
        """A new account, logged in through the cookie, with the CSRF header preset."""
        client = self.client()
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.org"
        response = await client.post(
            "/api/auth/register",
            json={"email": email, "password": PASSWORD, "display_name": name.title()},
        )
        assert response.status_code == 202, response.text
        response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        body = response.json()
        client.headers["X-CSRF-Token"] = body["csrf_token"]
        return User(client, body["user"]["id"], email, body["csrf_token"])

    async def team(self, owner: User, name: str = "Team", **members: str) -> str:
        """A team owned by ``owner``; ``members`` maps role -> nothing (use ``join``)."""
        response = await owner.post("/api/teams", json={"name": name})
        assert response.status_code == 201, response.text
        return response.json()["id"]  # type: ignore[no-any-return]

    async def join(self, admin: User, team_id: str, user: User, role: str) -> None:
        """Invite ``user`` with ``role`` and accept (through the API)."""
        inviter = admin
        response = await inviter.post(f"/api/teams/{team_id}/invitations", json={"role": role})
        assert response.status_code == 201, response.text
        token = response.json()["token"]
        response = await user.post(f"/api/invitations/{token}/accept")
        assert response.status_code == 200, response.text


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 problem with this status and return its body."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    return body  # type: ignore[no-any-return]
