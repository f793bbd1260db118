"""bench/gpu.py --cpu-smoke end to end: the script runs on tiny shapes and writes every field of its JSON file.

Only the presence and sense of the figures are checked (positive counts, fractions in range), never timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_cpu_smoke_writes_one_json_file_with_every_measurement(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), "--cpu-smoke", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["mode"] == "cpu-smoke" and data["machine"]["cuda"] is False
    first, second = data["shapes"]["tiny-a"], data["shapes"]["tiny-b"]
    for shape in (first, second):
        assert shape["parameters"] > 0
        assert shape["rollout_hf"]["tokens"] > 0 and shape["rollout_hf"]["tokens_per_s"] > 0
    assert first["rollout_vllm"].get("skipped") or first["rollout_vllm"]["tokens_per_s"] > 0
    full, lora = first["update_full"], second["update_lora"]
    for update in (full, lora):
        assert update["tokens"] == 4 * (16 + 8) and update["tokens_per_s"] > 0 and update["flops"] > 0
        assert update["mfu"] is None and update["peak_memory_gib"] is None  # no GPU: no peak rate, no CUDA memory
    assert lora["trainable"] < full["trainable"], "the LoRA update trains only the adapters"
    nested = first["nested_f_i2_step"]
    assert "error" not in nested, nested
    assert nested["opponent_requests"] > 0, "the tic-tac-toe opponent played through the loopback endpoint"
    for key in ("staleness_0", "staleness_1"):
        assert nested[key]["step_s"] > 0 and nested[key]["rollout_s"] > 0 and nested[key]["update_s"] > 0
    assert nested["ratio_one_step_off"] > 0
