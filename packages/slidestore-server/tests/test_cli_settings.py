"""A bad setting is a usage error naming it (exit 2), never a traceback."""

from __future__ import annotations

import pytest

from slidestore import tokens
from slidestore_server import cli


@pytest.mark.parametrize(
    ("command", "variable", "value", "named"),
    [
        ("coordinator", "SLIDESTORE_REBALANCE_TOLERANCE", "2", "rebalance_tolerance"),
        ("coordinator", "SLIDESTORE_REBALANCE_BYTES_PER_SECOND", "10", "rebalance_bytes"),
        ("node", "SLIDESTORE_BUSY_REPLICA_BYTES_PER_SECOND", "fast", "busy_replica_bytes"),
    ],
)
def test_a_bad_setting_names_itself(
    command: str,
    variable: str,
    value: str,
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SLIDESTORE_SECRET", tokens.new_secret())
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        cli.main([command])  # no flags: nothing is exported into os.environ
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "invalid setting" in err and named in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["node", "coordinator"])
@pytest.mark.parametrize("secret", [None, "dev-secret-change-me", "short-secret"])
def test_a_server_refuses_to_start_without_a_strong_secret(
    command: str,
    secret: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No default secret: with one, anyone could mint admin tokens and fake nodes."""
    monkeypatch.delenv("SLIDESTORE_SECRET", raising=False)
    if secret is not None:
        monkeypatch.setenv("SLIDESTORE_SECRET", secret)
    with pytest.raises(SystemExit) as stopped:
        cli.main([command])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "SLIDESTORE_SECRET" in err and "slidestore-server secret" in err
    assert "Traceback" not in err


def test_the_secret_command_prints_a_usable_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["secret"]) == 0
    first = capsys.readouterr().out.strip()
    assert cli.main(["secret"]) == 0
    second = capsys.readouterr().out.strip()
    assert first != second
    assert tokens.check_secret(first) == first
