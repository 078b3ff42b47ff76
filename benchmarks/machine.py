"""What a results file says about the machine it was measured on: CPU model, cores, torch,
GPU, load. Shared by every benchmark so their file names follow one scheme."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine(device: str | None = None) -> dict:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    m = {"cpu": cpu_model(), "cores": cores, "torch": torch.__version__, "gpu": gpu,
         "torch_threads": torch.get_num_threads()}
    if device is not None:
        m["device"] = device
    return m


def machine_slug(m: dict) -> str:
    """CPU model, cores, torch, GPU or nogpu: the results file's name."""
    cpu = re.sub(r"\((r|tm)\)|\bcpu\b|@.*$|processor", "", m["cpu"], flags=re.I)
    gpu = "nogpu" if m["gpu"] == "no GPU" else m["gpu"]
    parts = [cpu, f"{m['cores']}core", f"torch{m['torch'].split('+')[0]}", gpu]
    return re.sub(r"[^a-z0-9.]+", "-", "-".join(parts).lower()).strip("-")


def loadavg() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def write_results(out_dir, name: str, text: str, log=print):
    """Write a benchmark's results file ``<out_dir>/<name>.md``, print it, and say where it went."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.md"
    out.write_text(text)
    print(text)
    log(f"wrote {out}")
    return out
