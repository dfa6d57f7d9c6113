"""``icdcoder serve``: the HTTP API (and the review page) under uvicorn.

icdcoder api-key create interface-engine       # prints a key once; its hash is stored
icdcoder serve --port 8000                     # in process: codes notes itself
ICDCODER_API__MODE=bus icdcoder serve          # through the workers and the store worker
"""

from __future__ import annotations

import argparse
import sys

from icdcoder.commands.options import add_pipeline_options, fail, load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve the HTTP API (POST notes, GET codes and FHIR Bundles)",
        description="Serve the HTTP API. JSON logs on stdout. Needs an API key unless "
        "--no-auth (local experiments only).",
    )
    serve.add_argument("--host", help="address (default ICDCODER_HTTP__HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default ICDCODER_HTTP__PORT, 8080)")
    serve.add_argument("--mode", choices=["in-process", "bus"], help="ICDCODER_API__MODE")
    serve.add_argument("--store", help="results store URL (default ICDCODER_STORE__URL)")
    serve.add_argument(
        "--no-auth", action="store_true", help="no API key needed (binds 127.0.0.1 only)"
    )
    serve.add_argument("--server-log-level", default="INFO", help="log level (default INFO)")
    add_pipeline_options(serve)
    serve.set_defaults(handler=run_serve)

    keys = subparsers.add_parser("api-key", help="create, revoke or list HTTP API keys")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key (printed once) named NAME")
    create.add_argument("name")
    create.add_argument("--store", help="store URL (default ICDCODER_STORE__URL)")
    create.set_defaults(handler=run_create)
    revoke = actions.add_parser("revoke", help="revoke the key named NAME")
    revoke.add_argument("name")
    revoke.add_argument("--store", help="store URL (default ICDCODER_STORE__URL)")
    revoke.set_defaults(handler=run_revoke)
    listing = actions.add_parser("list", help="the keys' names and whether they are active")
    listing.add_argument("--store", help="store URL (default ICDCODER_STORE__URL)")
    listing.set_defaults(handler=run_list)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from icdcoder.api.app import create_app
    from icdcoder.api.coding import BusCoding, Coding, InProcessCoding
    from icdcoder.api.keys import key_ring
    from icdcoder.shared.logging import configure_logging
    from icdcoder.shared.pack import load_pack
    from icdcoder.shared.store.migrate import open_store

    configure_logging(args.server_log_level, stream=sys.stdout)
    settings = load_settings(args)
    http = settings.http.model_copy(
        update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    )
    if args.no_auth and http.host not in ("127.0.0.1", "localhost", "::1"):
        return fail("--no-auth only on 127.0.0.1: every other address needs API keys")
    store = open_store(settings.store)
    keys = key_ring(settings.api.keys.get_secret_value(), store)
    if keys.empty and not args.no_auth:
        return fail("no API key: create one with `icdcoder api-key create NAME`")
    pack = load_pack(settings.pack, index=settings.alphabetic_index)
    mode = args.mode or settings.api.mode
    coding: Coding
    if mode == "bus":
        coding = BusCoding(store, settings.bus)
    else:
        from icdcoder.bootstrap import build_pipeline

        coding = InProcessCoding(store, lambda: build_pipeline(settings, progress=None))
    app = create_app(
        settings, store=store, coding=coding, keys=keys, pack=pack.id, auth=not args.no_auth
    )
    uvicorn.run(
        app,
        host=http.host,
        port=http.port,
        log_config=None,
        server_header=False,
        h11_max_incomplete_event_size=16 * 1024,
        timeout_graceful_shutdown=30,
    )
    return 0


def run_create(args: argparse.Namespace) -> int:
    from icdcoder.api.keys import create_key
    from icdcoder.shared.store.migrate import open_store

    store = open_store(load_settings(args).store)
    key = create_key(store, args.name)
    print(key)
    print(f"key {args.name!r} created: keep it now, it is not shown again", file=sys.stderr)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from icdcoder.api.keys import revoke_key
    from icdcoder.shared.store.migrate import open_store

    if not revoke_key(open_store(load_settings(args).store), args.name):
        return fail(f"no active key named {args.name!r}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from icdcoder.api.keys import names
    from icdcoder.shared.store.migrate import open_store

    for name, active in names(open_store(load_settings(args).store)):
        print(f"{name}\t{'active' if active else 'revoked'}")
    return 0
