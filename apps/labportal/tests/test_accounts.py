"""Registration, login/logout, password change, login rate limit, CSRF on the session cookie."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from .conftest import portal_settings
from .helpers import PASSWORD, Portal, problem

pytestmark = pytest.mark.asyncio


async def test_register_then_log_in_sets_httponly_session_cookie_and_csrf(portal: Portal) -> None:
    client = portal.client()
    r = await client.post(
        "/api/auth/register",
        json={"email": " Ada@Example.ORG ", "password": PASSWORD, "display_name": " Ada "},
    )
    assert r.status_code == 202, r.text
    assert "set-cookie" not in r.headers and "user" not in r.json()  # registering is not logging in
    problem(await client.get("/api/auth/me"), 401)
    r = await client.post(
        "/api/auth/login", json={"email": "ADA@example.org", "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["email"] == "ada@example.org"
    assert body["user"]["display_name"] == "Ada"
    assert body["csrf_token"]
    cookie = r.headers["set-cookie"].lower()
    assert "labportal_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    me = await client.get("/api/auth/me")
    assert me.status_code == 200 and me.json()["csrf_token"] == body["csrf_token"]


async def test_register_validation_messages(portal: Portal) -> None:
    client = portal.client()
    cases = [
        ({"email": "nope", "password": PASSWORD, "display_name": "x"}, "e-mail address"),
        ({"email": "a@b.org", "password": "short", "display_name": "x"}, "at least 10"),
        ({"email": "a@b.org", "password": PASSWORD, "display_name": "  "}, "must not be blank"),
        ({"email": "a@b.org", "password": PASSWORD, "display_name": "a\x00b"}, "control"),
        ({"email": "a@b.org", "password": PASSWORD}, "display_name"),
    ]
    for payload, message in cases:
        body = problem(await client.post("/api/auth/register", json=payload), 400)
        assert message in body["detail"], body


async def test_registration_does_not_tell_who_has_an_account(portal: Portal) -> None:
    existing = await portal.user("dup")
    client = portal.client()
    taken = await client.post(
        "/api/auth/register",
        json={
            "email": existing.email.upper(),
            "password": "attacker password",
            "display_name": "X",
        },
    )
    fresh = await client.post(
        "/api/auth/register",
        json={"email": "nobody-" + existing.email, "password": PASSWORD, "display_name": "X"},
    )
    assert (taken.status_code, taken.content) == (fresh.status_code, fresh.content)
    assert taken.status_code == 202 and "set-cookie" not in taken.headers
    problem(await client.get("/api/auth/me"), 401)
    # Nothing changed for the existing account: the attacker's password does not open it.
    login = {"email": existing.email, "password": "attacker password"}
    problem(await client.post("/api/auth/login", json=login), 401)
    assert (await existing.get("/api/auth/me")).json()["user"]["display_name"] == "Dup"


async def test_login_logout_and_wrong_password(portal: Portal) -> None:
    user = await portal.user("bob")
    client = portal.client()
    body = problem(
        await client.post("/api/auth/login", json={"email": user.email, "password": "wrong-pass!"}),
        401,
    )
    assert body["code"] == "invalid_credentials"
    r = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf_token"]
    assert (await client.get("/api/teams")).status_code == 200
    # Logout is an unsafe request: it needs the CSRF header too.
    problem(await client.post("/api/auth/logout"), 403)
    r = await client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204
    problem(await client.get("/api/teams"), 401)


async def test_unauthenticated_is_401(portal: Portal) -> None:
    client = portal.client()
    for method, url in [("GET", "/api/teams"), ("POST", "/api/teams"), ("GET", "/api/tokens")]:
        problem(await client.request(method, url, json={}), 401)


async def test_csrf_header_required_for_unsafe_cookie_requests(portal: Portal) -> None:
    user = await portal.user("csrf")
    del user.client.headers["X-CSRF-Token"]
    body = problem(await user.post("/api/teams", json={"name": "T"}), 403)
    assert body["code"] == "csrf_failed"
    body = problem(
        await user.post("/api/teams", json={"name": "T"}, headers={"X-CSRF-Token": "forged"}), 403
    )
    assert body["code"] == "csrf_failed"
    assert (await user.get("/api/teams")).status_code == 200  # safe methods need none
    r = await user.post("/api/teams", json={"name": "T"}, headers={"X-CSRF-Token": user.csrf})
    assert r.status_code == 201


async def test_password_change(portal: Portal) -> None:
    user = await portal.user("pw")
    other = portal.client()
    r = await other.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 200
    body = problem(
        await user.post(
            "/api/auth/password",
            json={"current_password": "not-the-one!", "new_password": "brand new secret"},
        ),
        401,
    )
    assert "current password" in body["detail"]
    problem(
        await user.post(
            "/api/auth/password", json={"current_password": PASSWORD, "new_password": "short"}
        ),
        400,
    )
    r = await user.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "brand new secret"},
    )
    assert r.status_code == 204, r.text
    assert (await user.get("/api/teams")).status_code == 200  # this session survives
    problem(await other.get("/api/teams"), 401)  # the other one is logged out
    fresh = portal.client()
    problem(
        await fresh.post("/api/auth/login", json={"email": user.email, "password": PASSWORD}), 401
    )
    r = await fresh.post(
        "/api/auth/login", json={"email": user.email, "password": "brand new secret"}
    )
    assert r.status_code == 200


async def test_login_rate_limit(database_url: str) -> None:
    settings = portal_settings(database_url, login_max_failures=3, login_window_seconds=60)
    async with Portal.running(settings) as portal:
        user = await portal.user("limited")
        client = portal.client()
        wrong = {"email": user.email, "password": "wrong-password"}
        for _ in range(3):
            problem(await client.post("/api/auth/login", json=wrong), 401)
        r = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
        body = problem(r, 429)
        assert int(r.headers["retry-after"]) > 0 and body["retry_after"] > 0
        assert "too many failed logins" in body["detail"]
        # Another account from the same address is still allowed (per e-mail first).
        other = await portal.user("other")
        ok = await portal.client().post(
            "/api/auth/login", json={"email": other.email, "password": PASSWORD}
        )
        assert ok.status_code == 200


SIMPLE_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]


async def test_login_and_register_refuse_what_a_cross_site_form_can_send(portal: Portal) -> None:
    """Login CSRF: another site's form must not log the victim into the attacker's account."""
    attacker = await portal.user("attacker")
    victim = portal.client()
    login = {"email": attacker.email, "password": PASSWORD}
    register = {"email": "new-" + attacker.email, "password": PASSWORD, "display_name": "N"}
    for url, payload in (("/api/auth/login", login), ("/api/auth/register", register)):
        for media_type in SIMPLE_TYPES:
            headers = {"Content-Type": media_type} if media_type else {}
            r = await victim.post(url, content=json.dumps(payload), headers=headers)
            assert problem(r, 415)["code"] == "unsupported_media_type", (url, media_type)
        for origin in ("https://evil.example", "null", "http://portal.test.evil.example"):
            r = await victim.post(url, json=payload, headers={"Origin": origin})
            assert problem(r, 403)["code"] == "cross_origin", (url, origin)
    assert not victim.cookies  # no session was opened by any of them
    problem(await victim.get("/api/auth/me"), 401)
    # The portal's own page (same origin), and scripts (no Origin), are served.
    r = await victim.post("/api/auth/login", json=login, headers={"Origin": "http://portal.test"})
    assert r.status_code == 200, r.text
    r = await portal.client().post("/api/auth/login", json=login)
    assert r.status_code == 200, r.text


async def test_origin_is_the_configured_base_url(database_url: str) -> None:
    settings = portal_settings(database_url, base_url="https://portal.example.org/")
    async with Portal.running(settings) as portal:
        user = await portal.user("based")
        login = {"email": user.email, "password": PASSWORD}
        client = portal.client()
        # The Host the request names is not trusted once the origin is configured.
        r = await client.post(
            "/api/auth/login", json=login, headers={"Origin": "http://portal.test"}
        )
        assert problem(r, 403)["code"] == "cross_origin"
        for same in ("https://portal.example.org", "https://Portal.example.org:443"):
            r = await client.post("/api/auth/login", json=login, headers={"Origin": same})
            assert r.status_code == 200, (same, r.text)
        r = await client.post(
            "/api/auth/login", json=login, headers={"Origin": "https://portal.example.org:8443"}
        )
        problem(r, 403)


async def test_invitation_answers_refuse_a_foreign_origin(portal: Portal) -> None:
    owner, guest = await portal.user("owner"), await portal.user("guest")
    team = await portal.team(owner)
    token = (await owner.post(f"/api/teams/{team}/invitations", json={})).json()["token"]
    evil = {"Origin": "https://evil.example"}
    for answer in ("accept", "decline"):
        r = await guest.post(f"/api/invitations/{token}/{answer}", headers=evil)
        assert problem(r, 403)["code"] == "cross_origin"
    problem(await guest.get(f"/api/teams/{team}"), 404)
    r = await guest.post(
        f"/api/invitations/{token}/accept", headers={"Origin": "http://portal.test"}
    )
    assert r.status_code == 200, r.text


async def test_login_limit_locks_the_attacker_out_not_the_victim(database_url: str) -> None:
    settings = portal_settings(database_url, login_max_failures=3, login_window_seconds=60)
    async with Portal.running(settings) as portal:
        victim = await portal.user("victim")
        attacker = portal.client("203.0.113.66")
        wrong = {"email": victim.email, "password": "wrong-password"}
        right = {"email": victim.email, "password": PASSWORD}
        for _ in range(3):
            problem(await attacker.post("/api/auth/login", json=wrong), 401)
        for attempt in (wrong, right):  # even the right password, from the attacker's address
            assert problem(await attacker.post("/api/auth/login", json=attempt), 429)
        # The victim, from their own address, mistypes once and then gets in.
        home = portal.client("198.51.100.7")
        problem(await home.post("/api/auth/login", json=wrong), 401)
        assert (await home.post("/api/auth/login", json=right)).status_code == 200
        # Spreading guesses over many accounts runs into the per-address limit (3 x 4).
        others = [f"guess{i}@example.org" for i in range(9)]
        for email in others:
            r = await attacker.post("/api/auth/login", json={"email": email, "password": "x" * 10})
            problem(r, 401)
        r = await attacker.post(
            "/api/auth/login", json={"email": "fresh@example.org", "password": "x"}
        )
        assert int(problem(r, 429)["retry_after"]) > 0
        assert (await home.post("/api/auth/login", json=right)).status_code == 200


async def test_registration_flood_is_rate_limited(database_url: str) -> None:
    settings = portal_settings(database_url, register_max_per_address=3)
    async with Portal.running(settings) as portal:
        flood = portal.client("203.0.113.9")

        def account(i: int) -> dict[str, str]:
            return {"email": f"flood{i}@example.org", "password": PASSWORD, "display_name": "F"}

        for i in range(3):
            assert (await flood.post("/api/auth/register", json=account(i))).status_code == 202
        r = await flood.post("/api/auth/register", json=account(3))
        body = problem(r, 429)
        assert int(r.headers["retry-after"]) > 3000 and "too many registrations" in body["detail"]
        # No hash was computed for it, and another address is not affected.
        other = portal.client("198.51.100.20")
        assert (await other.post("/api/auth/register", json=account(4))).status_code == 202
        problem(await other.post("/api/auth/login", json={**account(3), "display_name": ""}), 401)


class CountingHasher:
    """Wraps the argon2 hasher: how many computations ran at once, at most."""

    def __init__(self, inner: Any, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds
        self.running = self.peak = 0
        self.lock = threading.Lock()

    def _timed(self, call: Any, *args: Any) -> Any:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(self.seconds)  # a costly hash: long enough for requests to overlap
            return call(*args)
        finally:
            with self.lock:
                self.running -= 1

    def hash(self, password: str) -> str:
        return self._timed(self.inner.hash, password)  # type: ignore[no-any-return]

    def verify(self, stored: str, password: str) -> bool:
        return self._timed(self.inner.verify, stored, password)  # type: ignore[no-any-return]


def _flood(portal: Portal, n: int) -> list[Any]:
    return [
        portal.client(f"192.0.2.{i}").post(
            "/api/auth/register",
            json={"email": f"c{i}@example.org", "password": PASSWORD, "display_name": "C"},
        )
        for i in range(n)
    ]


async def test_password_hashing_runs_at_most_n_at_once(database_url: str) -> None:
    settings = portal_settings(database_url, password_hash_concurrency=2)
    async with Portal.running(settings) as portal:
        counter = CountingHasher(portal.app.state.passwords._hasher, 0.1)
        portal.app.state.passwords._hasher = counter
        answers = await asyncio.gather(*_flood(portal, 8))
        assert [r.status_code for r in answers] == [202] * 8
        assert counter.peak == 2


async def test_busy_password_hashing_answers_503(database_url: str) -> None:
    settings = portal_settings(
        database_url, password_hash_concurrency=1, password_hash_wait_seconds=0.2
    )
    async with Portal.running(settings) as portal:
        counter = CountingHasher(portal.app.state.passwords._hasher, 0.5)
        portal.app.state.passwords._hasher = counter
        answers = await asyncio.gather(*_flood(portal, 3))
        assert sorted(r.status_code for r in answers) == [202, 503, 503]
        for r in answers:
            if r.status_code == 503:
                assert problem(r, 503)["code"] == "busy" and int(r.headers["retry-after"]) >= 1
        assert counter.peak == 1
        # Once the slot is free again, the next one is served.
        r = await portal.client().post(
            "/api/auth/login", json={"email": "c0@example.org", "password": PASSWORD}
        )
        assert r.status_code in (200, 401)


async def test_password_change_ends_other_sessions_and_api_tokens(portal: Portal) -> None:
    user = await portal.user("stolen")
    thief = portal.client("203.0.113.5")
    r = await thief.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 200
    token = await user.post("/api/tokens", json={"name": "t", "scopes": ["teams:read"]})
    bearer = {"Authorization": f"Bearer {token.json()['token']}"}
    bare = portal.client()
    assert (await bare.get("/api/teams", headers=bearer)).status_code == 200
    # Keeping them is a choice the user makes explicitly.
    new = {"current_password": PASSWORD, "new_password": "second secret!", "revoke_sessions": False}
    assert (await user.post("/api/auth/password", json=new)).status_code == 204
    assert (await thief.get("/api/teams")).status_code == 200
    assert (await bare.get("/api/teams", headers=bearer)).status_code == 200
    # The default ends every other credential; this session stays.
    new = {"current_password": "second secret!", "new_password": "third secret!!"}
    assert (await user.post("/api/auth/password", json=new)).status_code == 204
    problem(await thief.get("/api/teams"), 401)
    assert problem(await bare.get("/api/teams", headers=bearer), 401)["code"] == "invalid_token"
    assert (await user.get("/api/teams")).status_code == 200
    # Neither old password logs in any more.
    for old in (PASSWORD, "second secret!"):
        problem(
            await bare.post("/api/auth/login", json={"email": user.email, "password": old}), 401
        )
