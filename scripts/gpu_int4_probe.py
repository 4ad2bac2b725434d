"""Why does compiled int4 decoding fail on the GPU? A short probe on a shallow model of FFAA's widths.

Builds a LLaVA with Mistral-7B's layer widths but only LAYERS decoder layers (default 4), then,
for each torch.compile mode, loads it as `int4-ao`, warms up the compiled decoder (printing the
full traceback on failure) and times three batched candidates. Results: JSON lines on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def child(folder: str, quant: str) -> None:
    import gpu_bench as gb

    gb.ensure_importable()
    from ffaa.backends.hf_llava import HFLlavaBackend, LoadOptions
    from ffaa.bench import candidate_requests
    from ffaa.types import DecodingSettings

    start = time.perf_counter()
    backend = HFLlavaBackend.load(folder, LoadOptions(quant=quant, compile="on"))
    backend.warmup()
    warm = time.perf_counter() - start
    settings = DecodingSettings(max_new_tokens=256, min_new_tokens=256, stop_at_answer_end=False)
    requests = candidate_requests(gb.test_image())
    backend.generate(requests, settings)
    import torch

    torch.cuda.is_available() and torch.cuda.synchronize()
    start = time.perf_counter()
    backend.generate(requests, settings)
    torch.cuda.is_available() and torch.cuda.synchronize()
    print(json.dumps({"quant": quant, "mode": os.environ.get("FFAA_COMPILE_MODE"), "warmup_s": round(warm, 1),
                      "s_per_face": round(time.perf_counter() - start, 3), "fast_error": backend.fast_error,
                      "layers": os.environ.get("LAYERS")}), flush=True)


def main() -> None:
    import gpu_bench as gb

    gb.ensure_importable()
    layers = int(os.environ.setdefault("LAYERS", "4"))
    gb.MISTRAL_7B["num_hidden_layers"] = layers
    folder = Path("/tmp/ffaa_probe")
    gb.build_model(folder, Path(sys.argv[1]), False, "cuda")
    runs = os.environ.get("RUNS", "int4-ao:reduce-overhead,int4-ao:default,none:reduce-overhead")
    for run in runs.split(","):
        quant, mode = run.split(":")
        env = {**os.environ, "FFAA_COMPILE_MODE": mode, "FFAA_DEBUG": "1"}
        try:
            subprocess.run([sys.executable, __file__, "--child", str(folder), quant], env=env,
                           timeout=float(os.environ.get("CHILD_TIMEOUT", "150")))
        except subprocess.TimeoutExpired:
            print(json.dumps({"quant": quant, "mode": mode, "error": "timeout"}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3])
    else:
        main()
