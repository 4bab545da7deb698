"""The machine a benchmark ran on, described once for every script here: the CPU (its model name and the
flags that decide bfloat16 speed: avx512_bf16 and amx_bf16, with avx2 / avx512f / avx512_vnni / amx_tile beside
them), the cores this process may use, the threads torch picks, the library versions and this checkout's
commit. Timings from machines of different kinds are not comparable, so each figure is printed under this.

    from machine import describe, header
    info = describe()          # a JSON-ready dict, for the script's results
    print(header(info))        # two lines for people
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu() -> tuple[str, set[str]]:
    """The first CPU's model name and flags in /proc/cpuinfo (("unknown", {}) where there is none)."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model, flags


def describe(threads: int | None = None) -> dict[str, Any]:
    """The machine as a dict. threads: what the benchmark's children run with (default: torch's own pick)."""
    import torch

    model, flags = cpu()

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "absent"

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": model,
        "flags": {f: f in flags for f in FLAGS},
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "python": sys.version.split()[0],
        "commit": git("rev-parse", "--short", "HEAD") + (" (modified)" if git("status", "--porcelain") else ""),
    }


def header(info: dict[str, Any]) -> str:
    """Two lines for people: the CPU and its flags, cores and threads; the GPU if any, versions and commit."""
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in info["flags"].items())
    first = (
        f"cpu: {info['cpu']}; {flags} (torch CPU capability {info['cpu_capability']}); "
        f"{info['usable_cpus']} of {info['logical_cpus']} logical CPUs usable, {info['threads']} threads"
        f" (OMP_NUM_THREADS {info['omp_num_threads'] or 'unset'})"
    )
    gpu = f"gpu: {info['gpu']}; " if info["gpu"] else ""
    second = (
        f"{gpu}torch {info['torch']}, transformers {info['transformers']}, python {info['python']}, "
        f"gptloss checkout {info['commit']}"
    )
    return f"{first}\n{second}"
