"""The `gsv` command line: one argparse parser, one module per group of subcommands.

Each `scripts/*_cmds.py` module exposes `register(subparsers)` and keeps heavy imports (torch,
models, FastAPI) inside its command functions, so `gsv --help` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Subcommand groups, in the order they appear in `gsv --help`.
COMMAND_MODULES = [
    "scripts.synth_cmds",
    "scripts.serve_cmds",
    "scripts.train_cmds",
    "scripts.corpus_cmds",
    "scripts.eval_cmds",
    "scripts.export_cmds",
    "scripts.bench_cmds",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gsv", description="GPT-SoVITS few-shot voice cloning: synthesize, serve, train, export."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from gpt_sovits.errors import GSVError

    try:
        return int(args.func(args) or 0)
    except GSVError as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
