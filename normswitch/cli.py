"""The ``normswitch`` command: ``info``, ``verify``, ``bench``, ``demo``."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="normswitch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="platform, versions, backends and the selection per op")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument("--metrics", action="store_true", help="also print the normswitch_* metrics")
    sub.add_parser("verify", help="check every available backend against a float64 reference")
    sub.add_parser("bench", help="benchmark the backends side by side (GPU)", add_help=False)
    sub.add_parser("demo", help="DeepSeek-OCR in a vLLM server with normswitch", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "info":
        from .info import main as info_main
        return info_main(rest, as_json=args.json, with_metrics=args.metrics)
    if args.command == "verify":
        from .verify import main as verify_main
        return verify_main(rest)
    module = importlib.import_module(f"normswitch.{args.command}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
