"""The ``normswitch`` command: ``info``, ``build``, ``verify``, ``bench``, ``tune``, ``demo``."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    """Run a subcommand; an invalid setting prints its one line and returns 2."""
    from .config import ConfigError

    try:
        return _run(argv)
    except ConfigError as exc:
        print(f"normswitch: invalid setting: {exc}", file=sys.stderr)
        return 2


def _run(argv: Optional[list[str]]) -> int:
    parser = argparse.ArgumentParser(prog="normswitch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="platform, versions, backends and the selection per op")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument("--metrics", action="store_true", help="also print the normswitch_* metrics")
    sub.add_parser("build", help="compile and cache the cpu and cuda kernels ahead of time", add_help=False)
    verify = sub.add_parser("verify", help="check every available backend against a float64 reference")
    verify.add_argument("--build", action="store_true", help="first build the kernels, as `normswitch build`")
    sub.add_parser("bench", help="benchmark the backends side by side (GPU)", add_help=False)
    sub.add_parser("tune", help="time every backend per kind of call and row bucket; write a tuning file",
                   add_help=False)
    sub.add_parser("demo", help="DeepSeek-OCR (--model ocr2: OCR 2) in a vLLM server with normswitch", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "info":
        from .info import main as info_main
        return info_main(rest, as_json=args.json, with_metrics=args.metrics)
    if args.command == "build":
        from .prebuild import main as build_main
        return build_main(rest)
    if args.command == "verify":
        from .verify import main as verify_main

        built = 0
        if args.build:
            from .prebuild import build_all
            built = build_all()
            print()
        return max(built, verify_main(rest))
    module = importlib.import_module(f"normswitch.{args.command}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
