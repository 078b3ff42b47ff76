"""benchmarks/device.py runs end to end, unchanged, on a CPU (--device cpu --small), and
writes one results file naming the device with every part's numbers."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_device_check_runs_on_cpu_small(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device.py"), "--device", "cpu", "--small",
                        "--out-dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    files = list(tmp_path.glob("device-*-small.md"))
    assert len(files) == 1, files
    text = files[0].read_text()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine, machine_slug

    assert files[0].name == f"device-{machine_slug(machine('cpu'))}-small.md"
    assert "device used: **cpu**" in text and "FAILED" not in text
    for head in ("## Training", "## Sampling", "## LPIPS-alex", "## bf16 sampling"):
        assert head in text, head
    # Three training variants, each a positive rate.
    rates = re.findall(r"^\| (fp32|bf16|bf16 \+ channels-last) \| ([0-9.]+) \|", text, re.M)
    assert [v for v, _ in rates] == ["fp32", "bf16", "bf16 + channels-last"] and all(float(x) > 0 for _, x in rates)
    # The parameter count is the package's model's (an independent count here).
    from raystudy.config import load_config
    from raystudy.models import unet

    cfg = load_config(ROOT / "configs" / "cifar10.yaml", ["model.block_out_channels=[16,32]", "model.attention=[false,true]",
                                                   "model.layers_per_block=1", "model.norm_num_groups=8"])
    n = sum(p.numel() for p in unet.build(cfg.model, (3, 16, 16), seed=0).parameters())
    assert f"{n:,} parameters" in text
    # The torch search of the device's embeddings equals FAISS's; the random backbone is said.
    assert "**identical** to the torch search" in text and "random backbone" in text
    assert re.search(r"\*\*\d+ of 16\*\* labels changed", text)
