"""A steady, bounded load on a model's router: `python -m scripts.load URL --rps 20`.

Open-loop: requests start on schedule whether or not earlier ones have answered, so a slow
server shows up as latency instead of a quietly lower rate. Uses aiohttp (already installed
with Ray Serve), which costs the client far less CPU per request than httpx on a small host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import numpy as np

DIGIT_ROWS: list[list[float]] | None = None


def digit_rows() -> list[list[float]]:
    """Real digits from scikit-learn's bundled data when it is installed, else noise."""
    global DIGIT_ROWS
    if DIGIT_ROWS is None:
        try:
            from sklearn.datasets import load_digits

            DIGIT_ROWS = load_digits().data[:300].tolist()
        except ImportError:
            rng = np.random.default_rng(0)
            DIGIT_ROWS = rng.integers(0, 17, size=(300, 64)).astype(float).tolist()
    return DIGIT_ROWS


@dataclass
class Result:
    started: float
    status: int
    latency_ms: float
    headers: dict[str, str]
    request_id: str
    error: str | None = None


@dataclass
class LoadReport:
    results: list[Result] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        if not self.results:
            return {"requests": 0}
        starts = sorted(r.started for r in self.results)
        lat = sorted(r.latency_ms for r in self.results)
        span = max(starts[-1] - starts[0], 1e-9)
        return {
            "requests": len(self.results),
            "rps": len(self.results) / span,
            "failed": sum(r.status != 200 for r in self.results),
            "p50_ms": lat[len(lat) // 2],
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        }


async def run_load(
    url: str,
    rps: float,
    duration_s: float,
    stop: asyncio.Event | None = None,
    headers: Callable[[int], dict[str, str]] | None = None,
    body: Callable[[int], dict] | None = None,
    request_id_prefix: str | None = None,
    timeout_s: float = 30.0,
) -> LoadReport:
    report = LoadReport()
    rows = digit_rows()
    # Request ids must not repeat across runs: (request_id, role) keys the request log.
    request_id_prefix = request_id_prefix or f"load-{uuid.uuid4().hex[:8]}"
    make_body = body or (lambda i: {"instances": [rows[i % len(rows)]]})
    limit = max(int(duration_s * rps), 1)  # bounded in count as well as time
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=128)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def one(i: int) -> None:
            request_id = f"{request_id_prefix}-{i}"
            h = {"x-request-id": request_id, "content-type": "application/json"}
            if headers:
                h.update(headers(i))
            started = time.time()
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=json.dumps(make_body(i)), headers=h) as resp:
                    await resp.read()
                    report.results.append(
                        Result(
                            started,
                            resp.status,
                            (time.perf_counter() - t0) * 1000,
                            {k.lower(): v for k, v in resp.headers.items()},
                            request_id,
                        )
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                report.results.append(
                    Result(
                        started, -1, (time.perf_counter() - t0) * 1000, {}, request_id, repr(exc)
                    )
                )

        tasks: list[asyncio.Task] = []
        t_start = time.time()
        i = 0
        while i < limit and time.time() - t_start < duration_s:
            if stop is not None and stop.is_set():
                break
            tasks.append(asyncio.create_task(one(i)))
            i += 1
            await asyncio.sleep(max(0.0, t_start + i / rps - time.time()))
        await asyncio.gather(*tasks)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="e.g. http://127.0.0.1:8000/models/digits/predict")
    parser.add_argument("--rps", type=float, default=10)
    parser.add_argument("--duration", type=float, default=60, help="seconds (bounded)")
    parser.add_argument("--users", type=int, default=0, help="sticky keys to spread over")
    args = parser.parse_args(argv)
    headers = None
    if args.users:
        headers = lambda i: {"x-trackside-key": f"user-{random.randrange(args.users)}"}  # noqa: E731
    report = asyncio.run(run_load(args.url, args.rps, args.duration, headers=headers))
    print(json.dumps(report.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
