"""Run every benchmark module (`bench/bench_*.py`), or those named on the
command line (`python -m bench shifts`), and print the figures as a table.
`--strict` exits 1 when a figure misses its target."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import pkgutil
import sys
import time
from pathlib import Path

from bench.harness import Report


def discover(names: list[str]) -> list[str]:
    found = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    if names:
        wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in names}
        unknown = wanted - set(found)
        if unknown:
            raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        found = [m for m in found if m in wanted]
    return found


async def main(names: list[str]) -> Report:
    report = Report()
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        report.current = name.removeprefix("bench_")
        print(f"{report.current}:", flush=True)
        started = time.perf_counter()
        await module.run(report)
        print(f"  ({time.perf_counter() - started:.1f} s)", flush=True)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(main(discover(args.names)))
    print()
    print(result.table())
    if args.strict and result.missed:
        sys.exit(1)
