"""End to end inside vLLM on the GPU: normswitch on vs off (``VLLM_PLUGINS=""``), in one run.

For each mode (``compile``: vLLM's default Inductor + CUDA graphs; ``eager``: ``enforce_eager``)
one engine process per variant stays up on the GPU: ``off`` (no plugin), ``on`` (the plugin with
its defaults; under ``enforce_eager`` that includes the eager preset ``configs/cuda-eager.yaml``)
and, if asked, ``vllm_c`` (the plugin with vLLM's own ``_C`` kernels first for the decoder norms,
through normswitch's ``vllm_c`` backend) and ``triton`` (the plugin with Triton first for every
op, the built-in order, whatever the mode). The parent sends them the same workload
in turns (the order rotating per repetition), so all see the same machine state and drift
cancels in the paired ratios. Workloads:

- ``decode``: 64 prompts of 32 tokens -> 256 new tokens each (decode-heavy);
- ``prefill``: 64 prompts of 960 tokens -> 4 new tokens each (prefill-heavy);
- ``image`` (DeepSeek-OCR): 8 OCR requests with the test image -> 8 tokens each, one at a time.

``ab`` (eager mode) is one engine process with the plugin that times each workload twice per
repetition, with normswitch serving and with the replaced layers and swapped vision norms running
vLLM's own code (``ab-off``: what ``off`` runs, plus one Python call per decoder norm), so that
both arms meet the same process and host state; its ratio is against ``ab-off``.

``--pin own`` runs each engine process on its own share of the machine's cores (whole cores,
hyperthread siblings together); ``--pin same`` runs every engine on the same share (the engines
take turns, so each repetition pair then meets the same cores in about the same state).

Reported per (model, mode, workload): median output tokens/s (or seconds per image request) of
each variant with its interquartile range, the median and IQR of each variant's paired
speed-up over ``off``, and a bootstrap 95% interval of that median (the resolution of the run);
the JSON also keeps every repetition's value. Usage (on the GPU machine, vLLM set up with ``scripts/gpu_vllm.sh``):
``python -m benchmarks.vllm_e2e --model dense --layers 16 --modes compile,eager --variants
on,off,vllm_c --reps 15 --markdown FILE``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = {"dense": ("decode", "prefill"), "ocr": ("image",)}
SHAPES = {"decode": (64, 32, 256), "prefill": (64, 960, 4), "image": (8, 0, 8)}
"""workload -> (prompts, prompt tokens, new tokens); image prompts are sent one at a time."""
VLLM_C_CONFIG = """\
devices:
  cuda:
    ops:
      rms_norm: {backends: [vllm_c, triton, native]}
      fused_add_rms_norm: {backends: [vllm_c, triton, native]}
"""
"""The ``vllm_c`` variant's normswitch config: vLLM's own kernels through normswitch."""
TRITON_CONFIG = """\
devices:
  cuda:
    backends: [triton, sgl_kernel, vllm_c, cuda, native]
"""
"""The ``triton`` variant's normswitch config: the built-in order, over any preset."""
CONFIGS = {"vllm_c": VLLM_C_CONFIG, "triton": TRITON_CONFIG}


def serve_with_normswitch(on: bool) -> None:
    """Route the plugin's replaced vLLM layers and swapped vision norms through normswitch (``on``)
    or straight to the code vLLM runs without the plugin (the ``ab`` variant's arms, in one
    process): vLLM's own platform path, ``torch.nn.LayerNorm.forward`` and DeepSeek-OCR's
    ``LayerNorm2d.forward`` (the swaps keep the parameters they read)."""
    from torch import nn

    from normswitch import modules
    from normswitch.plugin.vllm import layers

    if not _SERVED:
        _SERVED.update({(m, "forward_normswitch"): (m.forward_normswitch, _vllm_path) for m in layers.SERVING.values()})
        _SERVED[(modules.LayerNormFP32, "forward")] = (modules.LayerNormFP32.forward, nn.LayerNorm.forward)
        try:
            from vllm.model_executor.models.deepencoder import LayerNorm2d
        except ImportError:
            pass
        else:
            _SERVED[(modules.LayerNorm2d, "forward")] = (modules.LayerNorm2d.forward, LayerNorm2d.forward)
    for (cls, name), (ours, vllms) in _SERVED.items():
        setattr(cls, name, ours if on else vllms)


def _vllm_path(self, vllm_path, *args, **kwargs):
    return vllm_path(self, *args, **kwargs)


_SERVED: dict[tuple[type, str], tuple] = {}
"""(class, method) -> (normswitch's function, the function vLLM runs without the plugin)."""


def _worker(model: str, kind: str, mode: str, kv_cache_gib: float) -> None:
    """Engine process: start, answer ``READY``, then time each workload named on stdin (a line
    ``<workload> off``: with :func:`serve_with_normswitch` off for that run)."""
    import random

    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from integration_tests.engine_run import prompt

    extra = {"limit_mm_per_prompt": {"image": 1}} if kind == "ocr" else {}
    llm = LLM(model=model, load_format="dummy", dtype="bfloat16", enforce_eager=mode == "eager",
              max_model_len=1024, max_num_seqs=64, gpu_memory_utilization=0.1,
              kv_cache_memory_bytes=int(kv_cache_gib * (1 << 30)), seed=0, **extra)
    rng = random.Random(0)
    requests = {}
    for name in WORKLOADS[kind]:
        n, length, new = SHAPES[name]
        if name == "image":
            requests[name] = ([prompt("image")] * n, new)
        else:
            requests[name] = ([TokensPrompt(prompt_token_ids=[rng.randrange(8, 400) for _ in range(length)])
                               for _ in range(n)], new)
    print("READY", flush=True)
    for line in sys.stdin:
        name, *arm = line.split()
        serve_with_normswitch(arm != ["off"])
        prompts, new = requests[name]
        params = SamplingParams(max_tokens=new, temperature=0.0, ignore_eos=True, detokenize=False)
        t0 = time.perf_counter()
        if name == "image":
            outs = [out for p in prompts for out in llm.generate([p], params, use_tqdm=False)]
        else:
            outs = llm.generate(prompts, params, use_tqdm=False)
        seconds = (time.perf_counter() - t0) / (len(prompts) if name == "image" else 1)
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        print(json.dumps({"workload": name, "seconds": seconds, "tokens": tokens}), flush=True)


class Engine:
    """One worker process (variant ``off``, ``on``, ``ab``, ``vllm_c`` or ``triton``) driven over its stdin/stdout."""

    def __init__(self, model: str, kind: str, mode: str, variant: str, log: Path, kv_cache_gib: float,
                 cpus: Optional[set[int]] = None) -> None:
        # No compile cache: the engines never share a compiled graph.
        env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_DISABLE_COMPILE_CACHE="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        env.pop("NORMSWITCH_COUNT_CALLS", None)
        if variant == "off":
            env["VLLM_PLUGINS"] = ""
        elif variant in CONFIGS:
            config = log.with_suffix(".yaml")
            config.write_text(CONFIGS[variant])
            env["NORMSWITCH_CONFIG"] = str(config)
        self.name = f"{mode}-{variant}"
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.vllm_e2e", "--worker", model, kind, mode,
                                      str(kv_cache_gib)],
                                     cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(log, "w"), text=True,
                                     preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus))

    def _line(self) -> str:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"engine {self.name} exited with {self.proc.wait()}")
            if line.startswith(("READY", "{")):
                return line

    def wait_ready(self) -> None:
        self._line()

    def time(self, workload: str, arm: str = "") -> dict:
        """One timed run of ``workload`` (``arm`` ``off``: normswitch's layers off, variant ``ab``)."""
        self.proc.stdin.write(f"{workload} {arm}".strip() + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def core_shares(parts: int) -> list[set[int]]:
    """This process's CPUs split into ``parts`` sets of whole cores (a core's hyperthreads stay
    together, from ``/sys/devices/system/cpu/cpu*/topology/thread_siblings_list``)."""
    cores: dict[str, set[int]] = {}
    for cpu in sorted(os.sched_getaffinity(0)):
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        cores.setdefault(siblings.read_text().strip() if siblings.exists() else str(cpu), set()).add(cpu)
    groups = list(cores.values())
    if len(groups) < parts:
        raise ValueError(f"--pin: {len(groups)} cores cannot give {parts} engines a core each")
    per = len(groups) // parts
    return [set().union(*groups[i * per:(i + 1) * per]) for i in range(parts)]


def bootstrap_median(values: list[float], draws: int = 2000) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of the median of ``values`` (fixed seed)."""
    import random

    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 4:
        return min(values), statistics.median(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


def arms(variant: str, mode: str) -> list[str]:
    """The sample streams of a variant: ``ab`` gives ``ab`` and ``ab-off`` (eager mode only: a CUDA
    graph captured with one arm would replay it for both); the others, one."""
    if variant != "ab":
        return [variant]
    return ["ab", "ab-off"] if mode == "eager" else []


def baseline(arm: str) -> str:
    """The arm a speed-up is measured against."""
    return "ab-off" if arm == "ab" else "off"


def measure(model_dir: str, kind: str, modes: list[str], variants: list[str], reps: int, deadline: float,
            logs: Path, kv_cache_gib: float = 8.0, workloads: Optional[list[str]] = None,
            pin: Optional[str] = None, engine: Optional[type] = None) -> list[dict]:
    """Start every (mode, variant) engine at once, then alternate the workloads; one row per
    (mode, workload). Stops repeating once ``time.monotonic()`` passes ``deadline``. ``engine``:
    the class of the engines (default :class:`Engine`)."""
    names = [(mode, v) for mode in modes for v in variants if arms(v, mode)]
    shares: list[Optional[set[int]]] = [None] * len(names)
    if pin is not None:
        shares = core_shares(len(names))
        shares = shares if pin == "own" else [shares[0]] * len(names)
    engines = {(mode, v): (engine or Engine)(model_dir, kind, mode, v, logs / f"{kind}-{mode}-{v}.log",
                                             kv_cache_gib, cpus)
               for (mode, v), cpus in zip(names, shares)}
    workloads = [w for w in WORKLOADS[kind] if workloads is None or w in workloads]
    try:
        for e in engines.values():
            e.wait_ready()
        samples: dict[tuple[str, str, str], list[float]] = {}
        for rep in range(reps + 1):  # the first repetition warms up and is dropped
            for mode in modes:
                order = [v for v in variants if (mode, v) in engines]
                for workload in workloads:
                    for v in order[rep % len(order):] + order[:rep % len(order)]:
                        streams = arms(v, mode)
                        for arm in streams if rep % 2 else streams[::-1]:
                            got = engines[(mode, v)].time(workload, "off" if arm.endswith("-off") else "")
                            rate = got["seconds"] if workload == "image" else got["tokens"] / got["seconds"]
                            if rep:
                                samples.setdefault((mode, workload, arm), []).append(rate)
            if rep and time.monotonic() > deadline:
                break
    finally:
        for e in engines.values():
            e.stop()
    rows = []
    for mode in modes:
        for workload in workloads:
            off = samples[(mode, workload, "off")]
            row = {"model": kind, "mode": mode, "workload": workload, "reps": len(off),
                   "unit": "s/request" if workload == "image" else "output tokens/s", "variants": {}}
            for v in variants:
                for arm in arms(v, mode):
                    got, base = samples[(mode, workload, arm)], samples[(mode, workload, baseline(arm))]
                    # speed-up over the baseline: > 1 means faster (seconds per request are inverted)
                    ratios = [b / a if workload == "image" else a / b for a, b in zip(got, base)]
                    row["variants"][arm] = {"value": _quartiles(got), "speedup": _quartiles(ratios),
                                            "speedup_ci95": bootstrap_median(ratios), "baseline": baseline(arm),
                                            "samples": got}
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    """The result table, median [p25, p75]; speed-up over the arm's baseline (``off``; ``ab-off``
    for ``ab``) > 1: faster than vLLM alone. Rows list the arms they measured."""
    def cell(q):
        return f"{q[1]:.4g} [{q[0]:.4g}, {q[2]:.4g}]"

    lines: list[str] = []
    current: Optional[str] = None
    for r in rows:
        got = r["variants"]
        arms_ = list(got)
        others = [a for a in arms_ if a != "off"]
        head = ["model", "mode", "workload", "unit", *arms_,
                *(f"speed-up {a}/{got[a]['baseline']}" for a in others),
                *(f"95% CI of {a}/{got[a]['baseline']}" for a in others), "reps"]
        header = "| " + " | ".join(head) + " |"
        if header != current:
            current = header
            lines += ([""] if lines else []) + [header, "|" + " --- |" * len(head)]
        speedups = [f"{got[a]['speedup'][1]:.3f} [{got[a]['speedup'][0]:.3f}, {got[a]['speedup'][2]:.3f}]"
                    for a in others]
        intervals = [f"[{got[a]['speedup_ci95'][0]:.3f}, {got[a]['speedup_ci95'][1]:.3f}]" for a in others]
        lines.append("| " + " | ".join([r["model"], r["mode"], r["workload"], r["unit"],
                                        *(cell(got[a]["value"]) for a in arms_), *speedups, *intervals,
                                        str(r["reps"])]) + " |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        _worker(argv[1], argv[2], argv[3], float(argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("dense", "ocr"), action="append", required=True)
    parser.add_argument("--modes", default="compile,eager")
    parser.add_argument("--variants", default="on,off",
                        help="comma-separated: on, off, ab, vllm_c, triton (off is always run)")
    parser.add_argument("--workloads", default=None,
                        help="comma-separated subset of decode, prefill, image (default: all of the model's)")
    parser.add_argument("--pin", choices=("own", "same"), default=None,
                        help="each engine on its own share of the cores, or every engine on the same share")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers of the dense model (hidden 4096)")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="no new repetition starts this many seconds after the start")
    parser.add_argument("--kv-cache-gib", type=float, default=8.0, help="KV cache of each engine")
    parser.add_argument("--logs", default=None, help="folder for the engines' logs")
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget_s

    from integration_tests.dense_checkpoint import build_dense_checkpoint
    from normswitch.demo.checkpoint import build_checkpoint

    work = Path(tempfile.mkdtemp(prefix="vllm-e2e-"))
    logs = Path(args.logs or work)
    logs.mkdir(parents=True, exist_ok=True)
    builders = {"dense": lambda path: build_dense_checkpoint(path, layers=args.layers), "ocr": build_checkpoint}
    variants = [v for v in args.variants.split(",") if v]
    variants += [] if "off" in variants else ["off"]
    rows = []
    for kind in args.model:
        model_dir = builders[kind](work / kind)
        rows += measure(str(model_dir), kind, args.modes.split(","), variants, args.reps, deadline, logs,
                        args.kv_cache_gib, args.workloads.split(",") if args.workloads else None, args.pin)
        print(markdown(rows), flush=True)
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
