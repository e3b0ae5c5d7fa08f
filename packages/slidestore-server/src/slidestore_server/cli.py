"""The ``slidestore-server`` command: ``node``, ``coordinator``, ``dev-cluster``, ``demo``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import msgspec

from slidestore_server.coordinator.settings import CoordinatorSettings
from slidestore_server.settings import NodeSettings


def _add_settings(parser: argparse.ArgumentParser, cls: type[msgspec.Struct]) -> None:
    for field in msgspec.structs.fields(cls):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            default=None,
            help=f"(env SLIDESTORE_{field.name.upper()}; default {field.default!r})",
        )


def _export(args: argparse.Namespace, cls: type[msgspec.Struct]) -> None:
    """Command-line values win over the environment; workers read them from there."""
    for field in msgspec.structs.fields(cls):
        value = getattr(args, field.name, None)
        if value is not None:
            os.environ[f"SLIDESTORE_{field.name.upper()}"] = str(value)


def _settings(parser: argparse.ArgumentParser, cls: type[Any]) -> Any:
    """Settings from the environment and flags; a bad value is a usage error (exit 2)
    naming the setting, not a traceback."""
    from slidestore_server.settings import from_env

    try:
        return from_env(cls)
    except msgspec.ValidationError as exc:
        parser.error(f"invalid setting: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slidestore-server")
    sub = parser.add_subparsers(dest="command", required=True)
    node = sub.add_parser("node", help="run a storage node")
    _add_settings(node, NodeSettings)
    node.add_argument("--log-level", default="warning")
    coordinator = sub.add_parser("coordinator", help="run a cluster coordinator")
    _add_settings(coordinator, CoordinatorSettings)
    coordinator.add_argument("--log-level", default="warning")
    dev = sub.add_parser("dev-cluster", help="a coordinator and N nodes on this machine")
    dev.add_argument("--nodes", type=int, default=3)
    dev.add_argument("--data-dir", default="./slidestore-dev-cluster")
    dev.add_argument("--replicas", type=int, default=None)
    dev.add_argument("--secret", default=None)
    sub.add_parser("demo", help="one node serving the sample slide (see demo --help)")
    sub.add_parser("secret", help="print a new cluster secret (32 random bytes)")
    sub.add_parser(
        "dask-worker",
        help="Dask workers on this node's host that read its blobs locally (see --help)",
    )
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from slidestore_server import demo

        return demo.main(argv[1:])
    if argv[:1] == ["dask-worker"]:
        from slidestore.analysis import locality

        return locality.main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "secret":
        from slidestore.tokens import new_secret

        print(new_secret())
        return 0

    from slidestore_server import serve

    if args.command == "node":
        _export(args, NodeSettings)
        settings: NodeSettings = _settings(parser, NodeSettings)
        serve.configure_logging()
        serve.run(
            "slidestore_server.node.asgi:app_from_env",
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=args.log_level,
        )
        return 0
    if args.command == "coordinator":
        _export(args, CoordinatorSettings)
        coordinator_settings: CoordinatorSettings = _settings(parser, CoordinatorSettings)
        serve.configure_logging()
        # One process: the leader loop and its in-flight copies live in it.
        serve.run(
            "slidestore_server.coordinator.asgi:app_from_env",
            host=coordinator_settings.host,
            port=coordinator_settings.port,
            log_level=args.log_level,
        )
        return 0
    if args.command == "dev-cluster":
        from slidestore_server import devcluster

        return devcluster.run(
            nodes=args.nodes, data_dir=args.data_dir, replicas=args.replicas, secret=args.secret
        )
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
