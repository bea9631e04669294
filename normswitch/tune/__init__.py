"""``normswitch tune``: measure every backend per kind of call and row bucket on this machine,
and write the tuning file the registry uses (``NORMSWITCH_TUNED`` or the config key ``tuned``).

One concept per module:

- :mod:`.buckets`: the row buckets one tuned choice serves;
- :mod:`.record`: recording the kinds of call a process serves (``NORMSWITCH_RECORD_CALLS``)
  and rebuilding calls from such a file;
- :mod:`.check`: checking a backend's result against the float64 reference before timing it;
- :mod:`.measure`: the calls to tune, grouped per kind and bucket, timed per backend;
- :mod:`.tuning_file`: the YAML file, its identity (device, driver, torch, triton) and loading;
- :mod:`.compare`: whether the tuned selection runs the fastest backend at each bench point;
- :mod:`.cli`: the command line.

Importing this package loads none of them (the registry imports :mod:`.buckets` only).
"""
from __future__ import annotations

from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    """``normswitch tune``; see :mod:`normswitch.tune.cli`."""
    from .cli import main as cli_main

    return cli_main(argv)
