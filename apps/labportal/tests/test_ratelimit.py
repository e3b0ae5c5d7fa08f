"""The login rate limiter on its own (a fake clock)."""

from __future__ import annotations

from labportal.security.ratelimit import LoginRateLimiter


def test_rate_limiter_window_and_address_limit() -> None:
    now = [0.0]
    limiter = LoginRateLimiter(2, 10, clock=lambda: now[0], address_factor=2)
    limiter.failed("a", "ip")
    assert limiter.retry_after("a", "ip") == 0
    limiter.failed("a", "ip")
    assert limiter.retry_after("a", "ip") == 10
    now[0] = 10.5
    assert limiter.retry_after("a", "ip") == 0  # the window slid past both failures
    for email in "bcde":
        limiter.failed(email, "ip")
    assert limiter.retry_after("fresh", "ip") > 0  # the address made 4 failures
    limiter.succeeded("b", "ip")
    assert limiter.retry_after("b", "elsewhere") == 0
