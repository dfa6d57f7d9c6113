"""``icdcoder user create|password|disable|list``: the review page's reviewers.

The password is read from standard input when it is not a terminal (one line), else asked
for twice without echo; never from the command line, where ``ps`` and shell histories see it.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from icdcoder.commands.options import fail, load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("user", help="create or manage the review page's reviewers")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create a reviewer (password from stdin or a prompt)",
        description="Create a reviewer named NAME. The password comes from standard input "
        "(first line) or, on a terminal, from a prompt; never from the command line.",
    )
    create.add_argument("name")
    create.add_argument("--store", help="store URL (default ICDCODER_STORE__URL)")
    create.set_defaults(handler=run_create)
    password = actions.add_parser("password", help="set a reviewer's password (re-enables)")
    password.add_argument("name")
    password.add_argument("--store", help="store URL (default ICDCODER_STORE__URL)")
    password.set_defaults(handler=run_password)
    disable = actions.add_parser("disable", help="disable a reviewer (their sessions end)")
    disable.add_argument("name")
    disable.add_argument("--store", help="store URL (default ICDCODER_STORE__URL)")
    disable.set_defaults(handler=run_disable)
    listing = actions.add_parser("list", help="reviewers and whether they are active")
    listing.add_argument("--store", help="store URL (default ICDCODER_STORE__URL)")
    listing.set_defaults(handler=run_list)


def read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        from icdcoder.api.users import UserError

        raise UserError("the two passwords differ")
    return first


def run_create(args: argparse.Namespace) -> int:
    from icdcoder.api.users import check_name, create_user
    from icdcoder.shared.store.migrate import open_store

    check_name(args.name)
    store = open_store(load_settings(args).store)
    create_user(store, args.name, read_password())
    print(f"user {args.name!r} created", file=sys.stderr)
    return 0


def run_password(args: argparse.Namespace) -> int:
    from icdcoder.api.users import set_password
    from icdcoder.shared.store.migrate import open_store

    store = open_store(load_settings(args).store)
    if not set_password(store, args.name, read_password()):
        return fail(f"no user named {args.name!r}")
    return 0


def run_disable(args: argparse.Namespace) -> int:
    from icdcoder.api.users import disable_user
    from icdcoder.shared.store.migrate import open_store

    if not disable_user(open_store(load_settings(args).store), args.name):
        return fail(f"no active user named {args.name!r}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from icdcoder.api.users import user_names
    from icdcoder.shared.store.migrate import open_store

    for name, active in user_names(open_store(load_settings(args).store)):
        print(f"{name}\t{'active' if active else 'disabled'}")
    return 0
