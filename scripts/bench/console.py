"""Console speed on a recorded fleet of 64 hosts x 8 GPUs: time to first frame, the time of a
full refresh of the Fleet screen (every host changed), and of the usual refresh (the hosts
that answered within one redraw interval), headless. Prints a table and a
RESULT line; targets 1.5 s and 50 ms."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from console.app import TracksideConsole
from scripts.bench.recorded_fleet import recorded_fleet


async def measure(hosts: int, gpus: int, refreshes: int) -> dict[str, float]:
    fleets = [recorded_fleet(hosts, gpus, seed=i) for i in range(refreshes + 1)]
    started = time.perf_counter()
    app = TracksideConsole([], poll_interval_s=3600)
    async with app.run_test(size=(200, 50)) as pilot:
        app.state.hosts = dict(fleets[0])
        app.refresh_screen()
        await pilot.pause()
        first = time.perf_counter() - started
        times = []
        for fleet in fleets[1:]:
            t0 = time.perf_counter()
            app.state.hosts.update(fleet)
            app.refresh_screen()
            await pilot.pause()
            times.append(time.perf_counter() - t0)
        # The usual case: one poll interval in which a few hosts answered (coalesced redraw).
        partial = []
        for i, fleet in enumerate(fleets[1:]):
            t0 = time.perf_counter()
            names = sorted(fleet)[(i * 8) % len(fleet) :][:8]
            app.state.hosts.update({n: fleet[n] for n in names})
            app.refresh_screen()
            await pilot.pause()
            partial.append(time.perf_counter() - t0)
        await pilot.press("m")
        await pilot.pause()
        t0 = time.perf_counter()
        app.refresh_screen()
        await pilot.pause()
        models = time.perf_counter() - t0
    return {
        "first_frame_s": first,
        "refresh_p50_ms": statistics.median(times) * 1000,
        "refresh_max_ms": max(times) * 1000,
        "refresh_8_hosts_p50_ms": statistics.median(partial) * 1000,
        "models_refresh_ms": models * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--refreshes", type=int, default=20)
    args = parser.parse_args(argv)
    r = asyncio.run(measure(args.hosts, args.gpus, args.refreshes))
    print(f"\nconsole ({args.hosts} hosts x {args.gpus} GPUs, {args.refreshes} full refreshes)")
    print(f"{'measure':<34}{'value':>10}{'target':>10}")
    print(f"{'time to first frame, s':<34}{r['first_frame_s']:>10.2f}{'<= 1.5':>10}")
    print(f"{'fleet refresh p50, ms':<34}{r['refresh_p50_ms']:>10.1f}{'<= 50':>10}")
    print(f"{'fleet refresh max, ms':<34}{r['refresh_max_ms']:>10.1f}{'':>10}")
    print(f"{'refresh after 8 hosts polled, ms':<34}{r['refresh_8_hosts_p50_ms']:>10.1f}{'':>10}")
    print(f"{'models refresh, ms':<34}{r['models_refresh_ms']:>10.1f}{'':>10}")
    print("RESULT console " + " ".join(f"{k}={v:.3f}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
