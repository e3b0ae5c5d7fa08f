"""``labportal db upgrade|downgrade|current``, ``labportal serve`` and ``labportal worker``."""

from __future__ import annotations

import argparse
import sys

from labportal.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labportal", description="The slidestore lab portal")
    parser.add_argument("--database-url", help="overrides LABPORTAL_DATABASE_URL")
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database migrations (alembic)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="migrate to a revision (default: head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    downgrade = db_commands.add_parser("downgrade", help="migrate down to a revision")
    downgrade.add_argument("revision")
    db_commands.add_parser("current", help="show the current revision")

    serve = commands.add_parser("serve", help="run the portal with uvicorn")
    serve.add_argument("--host", help="overrides LABPORTAL_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, help="overrides LABPORTAL_PORT (8000)")
    serve.add_argument("--migrate", action="store_true", help="migrate the database first")

    worker = commands.add_parser(
        "worker", help="run queued analysis tasks (on LABPORTAL_DASK_SCHEDULER, or a local cluster)"
    )
    worker.add_argument("--concurrency", type=int, help="overrides LABPORTAL_TASK_CONCURRENCY")

    args = parser.parse_args(argv)
    overrides = {"database_url": args.database_url} if args.database_url else {}
    settings = Settings.from_env(**overrides)

    if args.command == "db":
        from labportal.db import migrate

        if args.db_command == "upgrade":
            migrate.upgrade(settings.database_url, args.revision)
        elif args.db_command == "downgrade":
            migrate.downgrade(settings.database_url, args.revision)
        else:
            migrate.current(settings.database_url)
        return 0

    if args.command == "worker":
        import asyncio

        from labportal.domain.tasks.worker import run_worker

        if args.concurrency:
            settings = settings.replace(task_concurrency=args.concurrency)
        asyncio.run(run_worker(settings))
        return 0

    import uvicorn

    from labportal.app import create_app

    if args.host:
        settings = settings.replace(host=args.host)
    if args.port:
        settings = settings.replace(port=args.port)
    if args.migrate:
        settings = settings.replace(migrate_on_start=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
