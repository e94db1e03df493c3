"""Command line: ``python -m zfkit data`` (where is the data?)."""

from __future__ import annotations

import argparse
import sys


def _data(args: argparse.Namespace) -> int:
    from .data import DataNotFoundError, find_fashion_mnist, fashion_mnist

    try:
        folder = find_fashion_mnist(args.root)
        n_train, n_test = len(fashion_mnist("train", folder)), len(fashion_mnist("test", folder))
    except (DataNotFoundError, ValueError) as e:
        print(f"zfkit: {e}", file=sys.stderr)
        return 1
    print(f"Fashion-MNIST: {folder} ({n_train} train, {n_test} test images, MD5 verified)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zfkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="find and verify Fashion-MNIST (exit 1 with instructions when missing)")
    p.add_argument("--root", default=None, help="folder holding the four Fashion-MNIST files")
    p.set_defaults(run=_data)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
