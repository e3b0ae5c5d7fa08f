"""A bad setting is a usage error naming it (exit 2), never a traceback."""

from __future__ import annotations

import pytest

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
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        cli.main([command])  # no flags: nothing is exported into os.environ
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "invalid setting" in err and named in err
    assert "Traceback" not in err
