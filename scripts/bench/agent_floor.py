"""The smallest daemon the agent's chosen stack allows: FastAPI on uvicorn, a DuckDB file and
one psutil sample a second, no trackside code. The agent benchmark runs it beside the agent
so the agent's RSS can be read against what its dependencies alone cost."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import duckdb
import fastapi
import httpx  # noqa: F401  (the agent talks to Serve with it; its import is part of the floor)
import psutil
import uvicorn


def main(db: Path, port: int) -> None:
    con = duckdb.connect(str(db), config={"threads": 2, "memory_limit": "512MB"})
    con.execute("CREATE TABLE IF NOT EXISTS samples (ts TIMESTAMP, cpu DOUBLE)")
    app = fastapi.FastAPI()

    @app.get("/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    async def sample() -> None:
        while True:
            con.execute("INSERT INTO samples VALUES (now(), ?)", [psutil.cpu_percent()])
            await asyncio.sleep(1)

    async def serve() -> None:
        task = asyncio.get_running_loop().create_task(sample())
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        await uvicorn.Server(config).serve()
        task.cancel()

    asyncio.run(serve())


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
