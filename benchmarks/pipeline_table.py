"""Print the README's pipeline table from edgepose-bench JSON files.

    python benchmarks/pipeline_table.py benchmarks/results/bench_*.json
"""

from __future__ import annotations

import json
import sys


def row(path: str) -> str:
    d = json.load(open(path))
    r = d["runs"][0]
    lat = r["latency_ms"]
    pre, inf, dec, tot = (lat[k]["median"] for k in ("preprocess", "inference", "decode", "total"))
    return (f"| {d['model']['name']} | {r['input_size'][0]}x{r['input_size'][1]} | {pre:.2f} | {inf:.1f} | {dec:.2f} | "
            f"{tot:.1f} | {r['fps']:.1f} | {(pre + dec) / inf * 100:.1f}% |")


def main(paths: list) -> int:
    print("| model | input | pre-process | inference | decode | total | FPS | (pre-process + decode) / inference |")
    print("|---|---|---|---|---|---|---|---|")
    for p in paths:
        print(row(p))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
