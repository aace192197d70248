#!/usr/bin/env python3
"""Print the latest criterion results as a Markdown table, with each benchmark's ratio to
the baseline of its group measured in the same run.

Usage: python3 scripts/bench_report.py [target/criterion]

In every group, a benchmark whose function id starts with `baseline` is the baseline for
the benchmarks that share its parameter (for example the document size); a group
without a parameter compares everything with its one baseline. Ratios < 1 are faster
than the baseline.
"""
import json
import pathlib
import sys


def fmt_time(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def fmt_thrpt(tp, ns):
    if not tp:
        return ""
    (kind, amount), = tp.items()
    per_s = amount / (ns / 1e9)
    if kind == "Bytes":
        return f"{per_s / (1 << 20):.1f} MiB/s"
    return f"{per_s:,.0f} elem/s"


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    rows = []
    for bench in sorted(root.glob("**/new/benchmark.json")):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        rows.append((meta, est["median"]["point_estimate"]))
    if not rows:
        print(f"no criterion results under {root}", file=sys.stderr)
        return 1
    groups = {}
    for meta, ns in rows:
        groups.setdefault(meta["group_id"], []).append((meta, ns))
    print("| group | benchmark | parameter | median | throughput | ratio to baseline |")
    print("| --- | --- | --- | --- | --- | --- |")
    for group, items in groups.items():
        baselines = {}
        for meta, ns in items:
            if meta["function_id"] and meta["function_id"].startswith("baseline"):
                baselines[meta.get("value_str")] = ns
        lone = next(iter(baselines.values())) if len(baselines) == 1 else None

        def sort_key(item):
            meta = item[0]
            v = meta.get("value_str") or ""
            return (int(v) if v.isdigit() else 0, v, not meta["function_id"].startswith("baseline"), meta["function_id"])

        for meta, ns in sorted(items, key=sort_key):
            base = baselines.get(meta.get("value_str"), lone)
            ratio = f"{ns / base:.2f}×" if base else ""
            print(
                f"| {group} | {meta['function_id']} | {meta.get('value_str') or ''} | "
                f"{fmt_time(ns)} | {fmt_thrpt(meta.get('throughput'), ns)} | {ratio} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
