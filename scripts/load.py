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
from pathlib import Path

import aiohttp
import numpy as np

DIGIT_ROWS: list[list[float]] | None = None
DIGIT_LABELS: list[int] | None = None


def digit_rows() -> list[list[float]]:
    """Real digits from scikit-learn's bundled data when it is installed, else noise."""
    global DIGIT_ROWS, DIGIT_LABELS
    if DIGIT_ROWS is None:
        try:
            from sklearn.datasets import load_digits

            digits = load_digits()
            DIGIT_ROWS = digits.data[:300].tolist()
            DIGIT_LABELS = [int(y) for y in digits.target[:300]]
        except ImportError:
            rng = np.random.default_rng(0)
            DIGIT_ROWS = rng.integers(0, 17, size=(300, 64)).astype(float).tolist()
    return DIGIT_ROWS


def digit_labels() -> list[int] | None:
    """The true digit of each of digit_rows() (None: the rows are noise)."""
    digit_rows()
    return DIGIT_LABELS


def shifted(row: list[float], rng: random.Random) -> list[float]:
    """The drift switch: a dirtier sensor, noise on every pixel (digits' pixels are 0..16)."""
    return [min(16.0, v + rng.uniform(0, 9)) for v in row]


class TruthSender:
    """Each call's true label, POSTed to the controller's /v1/feedback `delay_s` after the
    call, as a labelling pipeline would (batched once a second)."""

    def __init__(self, url: str, token: str, model: str, delay_s: float) -> None:
        self.url = url.rstrip("/") + "/v1/feedback"
        self.headers = {"authorization": f"Bearer {token}"}
        self.model = model
        self.delay_s = delay_s
        self.waiting: list[tuple[float, str, int]] = []  # (sent at, request id, label)
        self.sent = 0
        self.joined = 0

    def note(self, request_id: str, label: int) -> None:
        self.waiting.append((time.time(), request_id, label))

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while not (stop.is_set() and not self.waiting):
                await asyncio.sleep(1)
                due = time.time() - (0 if stop.is_set() else self.delay_s)
                ready = [w for w in self.waiting if w[0] <= due][:10_000]
                if not ready:
                    continue
                self.waiting = self.waiting[len(ready) :]
                records = [{"request_id": rid, "label": label} for _, rid, label in ready]
                body = {"model": self.model, "records": records}
                try:
                    async with session.post(self.url, json=body, headers=self.headers) as r:
                        if r.status == 200:
                            self.joined += (await r.json())["joined"]
                except (aiohttp.ClientError, TimeoutError):
                    pass  # the labels of that second are lost, as a flaky pipeline's would be
                self.sent += len(records)
                if stop.is_set():
                    return


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
    parser.add_argument(
        "--drift-after", type=float, help="seconds: then noise is added to every pixel"
    )
    parser.add_argument("--truth", help="an agent's URL: send each call's true label to it")
    parser.add_argument("--truth-token-file", type=Path, help="its token (default: the demo's)")
    parser.add_argument("--truth-delay", type=float, default=10, help="seconds after the call")
    parser.add_argument("--model", default="digits")
    args = parser.parse_args(argv)
    headers = None
    if args.users:
        headers = lambda i: {"x-trackside-key": f"user-{random.randrange(args.users)}"}  # noqa: E731
    rows, labels = digit_rows(), digit_labels()
    prefix = f"load-{uuid.uuid4().hex[:8]}"
    truth = None
    if args.truth and labels is not None:
        token_file = args.truth_token_file or Path(".trackside/agent.token")
        truth = TruthSender(
            args.truth, token_file.read_text().strip(), args.model, args.truth_delay
        )
    started = time.time()
    noise = random.Random(7)

    def body(i: int) -> dict:
        row = rows[i % len(rows)]
        if args.drift_after is not None and time.time() - started >= args.drift_after:
            row = shifted(row, noise)
        if truth is not None and labels is not None:
            truth.note(f"{prefix}-{i}", labels[i % len(labels)])
        return {"instances": [row]}

    async def run() -> LoadReport:
        stop = asyncio.Event()
        sender = asyncio.create_task(truth.run(stop)) if truth else None
        report = await run_load(
            args.url, args.rps, args.duration, headers=headers, body=body, request_id_prefix=prefix
        )
        stop.set()
        if sender is not None:
            await sender
        return report

    report = asyncio.run(run())
    summary = report.summary()
    if truth is not None:
        summary.update(truth_sent=truth.sent, truth_joined=truth.joined)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
