"""Subcommands of the icdcoder CLI; each module has register(subparsers)."""
