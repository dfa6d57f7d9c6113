"""HTTP API latency: POST a note with ``?wait=`` until it comes back coded, p50/p95/p99.

    python -m bench.api_latency [--notes DIR] [--limit N] [--rate 1] [--mode in-process|bus]

Starts ``icdcoder serve`` (uvicorn) as a process on a free port with a new SQLite store and a
key of its own, waits until it is ready, then sends the notes twice: paced at ``--rate`` notes/s
(one open request per note, as an interface engine would), then as fast as the server answers
(``--concurrency`` requests in flight: the sustained maximum). Each request is a new note id, so
nothing is answered from the store. In ``bus`` mode the stage workers and the store worker must
already run against the same store and Redis (``ICDCODER_*`` settings). Prints figures; asserts
nothing (speed is reported, not tested).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

DEFAULT_NOTES = Path(__file__).resolve().parents[2] / "shared/data/codiesp/dev/text_files_en"
KEY = "bench-" + os.urandom(16).hex()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def quantiles(seconds: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {
        "p50_s": round(cuts[49], 3),
        "p95_s": round(cuts[94], 3),
        "p99_s": round(cuts[98], 3),
        "max_s": round(max(seconds), 3),
    }


async def post(client: httpx.AsyncClient, note_id: str, text: str, wait_s: float) -> float:
    started = time.perf_counter()
    response = await client.post(
        "/v1/notes", params={"wait": wait_s}, json={"id": note_id, "text": text}
    )
    if response.status_code != 200:
        raise SystemExit(f"{note_id}: {response.status_code} {response.text[:300]}")
    return time.perf_counter() - started


async def paced(
    client: httpx.AsyncClient, texts: list[str], rate: float, tag: str
) -> tuple[list[float], float]:
    """One request every 1/rate seconds, each awaited on its own."""
    started = time.perf_counter()
    tasks = []
    for i, text in enumerate(texts):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post(client, f"{tag}-{i}", text, 60)))
    latencies = list(await asyncio.gather(*tasks))
    return latencies, len(texts) / (time.perf_counter() - started)


async def saturated(
    client: httpx.AsyncClient, texts: list[str], concurrency: int, tag: str
) -> tuple[list[float], float]:
    """``concurrency`` requests always in flight."""
    queue = list(enumerate(texts))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            i, text = queue.pop(0)
            latencies.append(await post(client, f"{tag}-{i}", text, 60))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, len(texts) / (time.perf_counter() - started)


async def measure(base_url: str, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {KEY}"}
    timeout = httpx.Timeout(120.0)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout) as client:
        run = os.urandom(3).hex()
        await post(client, f"warm-{run}", texts[0], 60)
        slow, slow_rate = await paced(client, texts, args.rate, f"paced-{run}")
        fast, fast_rate = await saturated(client, texts, args.concurrency, f"max-{run}")
    chars = statistics.median(len(t) for t in texts)
    return {
        "mode": args.mode,
        "notes": len(texts),
        "median_note_chars": chars,
        f"at_{args.rate:g}_note_per_s": {"notes_per_s": round(slow_rate, 2), **quantiles(slow)},
        f"max_{args.concurrency}_in_flight": {
            "notes_per_s": round(fast_rate, 2),
            **quantiles(fast),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notes", type=Path, default=DEFAULT_NOTES)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1.0, help="paced notes/s")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at max")
    parser.add_argument("--mode", choices=["in-process", "bus"], default="in-process")
    args = parser.parse_args()
    texts = [p.read_text("utf-8") for p in sorted(args.notes.glob("*.txt"))[: args.limit]]
    port = free_port()
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "ICDCODER_API__KEYS": f"bench:{digest}",
            "ICDCODER_STORE__URL": os.environ.get(
                "ICDCODER_STORE__URL", f"sqlite:///{folder}/store.db"
            ),
        }
        log = Path(folder) / "serve.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [
                    *(sys.executable, "-m", "icdcoder", "serve", "--mode", args.mode),
                    *("--port", str(port), "--server-log-level", "WARNING"),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        base_url = f"http://127.0.0.1:{port}"
        try:
            started = time.perf_counter()
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"server exited:\n{log.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{base_url}/healthz/ready").status_code == 204:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            ready_s = time.perf_counter() - started
            figures = asyncio.run(measure(base_url, texts, args))
        finally:
            server.terminate()
            server.wait(60)
    print(json.dumps({"server_ready_s": round(ready_s, 1), **figures}, indent=2))


if __name__ == "__main__":
    main()
