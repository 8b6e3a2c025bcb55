"""The argument parser of `slmrec`: each command module registers its own subcommands."""

from __future__ import annotations

import argparse

from core.cli import data, results, run, serve


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="slmrec", description="SLMRec Lab: distil LLM recommenders.")
    parser.add_argument("--root", default=None, help="project folder holding data/ and checkpoints/")
    sub = parser.add_subparsers()
    for module in (data, run, serve, results):
        module.add_parsers(sub)
    return parser
