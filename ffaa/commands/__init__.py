"""Subcommands of the `ffaa` command line, one module each."""
