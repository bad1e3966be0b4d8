"""Placeholder: implemented in its own issue."""
import argparse

HELP = "not implemented yet"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    print("not implemented yet")
    return 2
