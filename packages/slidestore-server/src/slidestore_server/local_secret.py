"""A cluster secret for servers started on one machine by ``dev-cluster`` and the demos:
made once per data directory and kept there, readable by its owner alone."""

from __future__ import annotations

import os
from pathlib import Path

from slidestore import tokens

SECRET_FILE = "cluster-secret"


def secret_for(data_dir: Path) -> str:
    """The secret kept in ``data_dir`` (made now if missing or too weak to use)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / SECRET_FILE
    try:
        return tokens.check_secret(path.read_text().strip())
    except (FileNotFoundError, tokens.WeakSecret):
        pass
    secret = tokens.new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    return secret
