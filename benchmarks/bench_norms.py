"""Benchmark every normswitch op side by side with its alternatives (same as ``normswitch bench``).

Usage: ``python benchmarks/bench_norms.py --json out.json --markdown out.md --plot out.png``
(``--help`` lists the options). Needs a CUDA GPU; Liger-Kernel and fla-core are optional columns.
"""
import sys

from normswitch.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
