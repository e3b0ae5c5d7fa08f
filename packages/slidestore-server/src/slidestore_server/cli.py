"""The ``slidestore-server`` command: ``node``, ``coordinator``, ``dev-cluster``, ``demo``,
``serve`` (a folder of slides), ``secret``."""

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
    folder = sub.add_parser(
        "serve", help="DeepZoom, IIIF and zarr for every slide in a folder (read-only, no copy)"
    )
    folder.add_argument("folder", help="the folder of slides (walked recursively)")
    folder.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback)")
    folder.add_argument("--port", type=int, default=8780)
    folder.add_argument("--workers", type=int, default=1)
    folder.add_argument("--viewer-dir", default=None, help="OpenSeadragon's build directory")
    folder.add_argument(
        "--cache-dir", default=None, help="prerendered levels (default: the user's cache)"
    )
    folder.add_argument(
        "--no-prerender", action="store_true", help="render derived levels only on demand"
    )
    folder.add_argument("--log-level", default="warning")
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
    if args.command == "serve":
        return _serve_folder(parser, args)
    if args.command == "dev-cluster":
        from slidestore_server import devcluster

        return devcluster.run(
            nodes=args.nodes, data_dir=args.data_dir, replicas=args.replicas, secret=args.secret
        )
    parser.error(f"unknown command {args.command}")
    return 2


def _serve_folder(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Tokens are optional on loopback and required otherwise: a folder served on the
    network is read only with read tokens signed by ``SLIDESTORE_SECRET``."""
    from pathlib import Path

    from slidestore import tokens
    from slidestore.errors import WeakSecret
    from slidestore_server import serve
    from slidestore_server.folder.index import scan
    from slidestore_server.folder.settings import is_loopback

    root = Path(args.folder).expanduser().resolve()
    if not root.is_dir():
        parser.error(f"{args.folder}: not a directory")
    loopback = is_loopback(args.host)
    secret = os.environ.get("SLIDESTORE_SECRET", "")
    if secret or not loopback:
        try:
            tokens.check_secret(secret)
        except WeakSecret as exc:
            parser.error(
                f"--host {args.host} is reachable from other machines, so every request needs "
                f"a read token: {exc}"
                if not loopback
                else str(exc)
            )
    else:
        secret = tokens.new_secret()  # only this process's own links could use it
    os.environ.update(
        {
            "SLIDESTORE_SERVE_ROOT": str(root),
            "SLIDESTORE_HOST": args.host,
            "SLIDESTORE_PORT": str(args.port),
            "SLIDESTORE_WORKERS": str(args.workers),
            "SLIDESTORE_SECRET": secret,
            "SLIDESTORE_TOKENS_REQUIRED": "false" if loopback else "true",
        }
    )
    if args.viewer_dir:
        os.environ["SLIDESTORE_VIEWER_DIR"] = args.viewer_dir
    if args.cache_dir:
        os.environ["SLIDESTORE_RENDER_CACHE_DIR"] = args.cache_dir
    if args.no_prerender:
        os.environ["SLIDESTORE_PRERENDER"] = "false"
    url = f"http://{args.host}:{args.port}/"
    count = len(scan(root))
    print(f"serving {count} slides from {root} (read-only) at {url}", flush=True)
    if not loopback:
        index_token = tokens.mint(
            secret, ops={tokens.Operation.READ}, ttl=12 * 3600, subject="serve-index"
        )
        print(f"index for 12 h (read token for all slides): {url}?token={index_token}", flush=True)
    serve.configure_logging()
    serve.run(
        "slidestore_server.folder.asgi:app_from_env",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
