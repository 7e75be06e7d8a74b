"""Speed of the OpenMoji-scenes builder (`kgmm data build-bench`), in scenes per second.

Builds the benchmark into a temporary folder for each worker count and reports, end to end
(sampling, drawing and JPEG-encoding the images, questions, captions, retrieval queries,
JSON files — not the one-off KG compile and sprite rendering, which are done first), the
wall time and scenes per second. A second build into the same folder measures a resume that
finds every image done (the JSON work alone). The goal in the issue: ≥ 200 scenes/s on the
2-core machine.

Usage::

    python benchmarks/build_bench.py [--scenes N] [--size PX] [--workers 1,2] [--repeat K]
                                     [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--repeat", type=int, default=1,
                        help="builds per worker count; the fastest is reported (the machine "
                             "may be shared)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    from kgmm.data.openmoji.build import build_benchmark, load_default_kg, plan_benchmark

    start = time.perf_counter()
    kg = load_default_kg()
    kg_seconds = time.perf_counter() - start
    plan_benchmark(kg, args.seed, args.size)  # warm: category paths are cached per process
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {"scenes": args.scenes, "size": args.size, "repeat": args.repeat,
                               "cpu_count": os.cpu_count(), "kg_load_s": round(kg_seconds, 2),
                               "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        # render the sprite atlas once so that no run pays for it
        build_benchmark(Path(tmp) / "warm", 20, seed=args.seed, size=args.size, kg=kg,
                        workers=1)
        for workers in [int(w) for w in args.workers.split(",")]:
            fulls, resumes = [], []
            for k in range(args.repeat):
                out = Path(tmp) / f"w{workers}-{k}"
                start = time.perf_counter()
                build_benchmark(out, args.scenes, seed=args.seed, size=args.size, kg=kg,
                                workers=workers)
                fulls.append(time.perf_counter() - start)
                start = time.perf_counter()
                build_benchmark(out, args.scenes, seed=args.seed, size=args.size, kg=kg,
                                workers=workers)
                resumes.append(time.perf_counter() - start)
                shutil.rmtree(out)
            full, resume = min(fulls), min(resumes)
            results["runs"].append({
                "workers": workers, "build_s": round(full, 2),
                "scenes_per_s": round(args.scenes / full, 1),
                "resume_s": round(resume, 2),
                "resume_scenes_per_s": round(args.scenes / resume, 1),
            })
    results["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(f"OpenMoji-scenes build: {args.scenes} scenes at {args.size} px "
          f"({os.cpu_count()} CPUs, load average {load_before:.1f} → "
          f"{results['load_average'][1]:.1f}; WordNet loaded in {kg_seconds:.1f} s, "
          "not counted)")
    print(f"{'workers':>8} {'build s':>9} {'scenes/s':>9} {'resume s':>9} {'scenes/s':>9}")
    for run in results["runs"]:
        print(f"{run['workers']:>8} {run['build_s']:>9.2f} {run['scenes_per_s']:>9.1f} "
              f"{run['resume_s']:>9.2f} {run['resume_scenes_per_s']:>9.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
