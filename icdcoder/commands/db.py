"""``icdcoder db upgrade|status``: the results store's schema and contents."""

from __future__ import annotations

import argparse

from icdcoder.commands.options import load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("db", help="the results store: create/upgrade the schema")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = actions.add_parser(
        "upgrade", help="create or upgrade the store's schema (Alembic migrations)"
    )
    upgrade.add_argument("--store", help="store URL (default ICDCODER_STORE__URL)")
    upgrade.set_defaults(handler=run_upgrade)
    status = actions.add_parser("status", help="the schema revision and row counts")
    status.add_argument("--store", help="store URL (default ICDCODER_STORE__URL)")
    status.set_defaults(handler=run_status)


def run_upgrade(args: argparse.Namespace) -> int:
    from icdcoder.shared.store.engine import make_engine
    from icdcoder.shared.store.migrate import current, upgrade

    engine = make_engine(load_settings(args).store.url.get_secret_value())
    before = current(engine)
    after = upgrade(engine)
    print(f"store schema: {before or 'empty'} -> {after}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from icdcoder.shared.store.migrate import open_store

    store = open_store(load_settings(args).store, auto_create=False)
    for name, value in sorted(store.counts().items()):
        print(f"{name:<16} {value:,}")
    return 0
