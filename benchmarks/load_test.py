"""Load-test ``fewlabel serve``: throughput and latency of the HTTP service under concurrent clients.

Starts the service in a subprocess on 127.0.0.1 (a free port, loopback only, a random API key), waits
for ``/health``, sends a fixed number of ``POST /predict`` requests from ``--concurrency`` concurrent
clients, stops the server and reports requests/s, texts/s, p50/p99 latency and errors.

    python -m benchmarks.load_test MODEL_DIR --requests 2000 --concurrency 16 --batch 1

``--batch 1`` sends ``{"text": ...}``; ``--batch N`` sends ``{"texts": [N texts]}``. Every text is
distinct, and the server gets a fresh embedding cache, so no prediction is a cache lookup.

Fairness under large requests: ``--big-clients 2`` adds two clients that send 1.9 MB requests (256
long texts each, ``--big-bytes``) back to back for as long as the measured clients run; the figures
printed first are still those of the measured (small) requests, then those of the large ones.

    python -m benchmarks.load_test MODEL_DIR --requests 2000 --concurrency 16 --engine torch-bf16 --big-clients 2

MODEL_DIR is any trained model, for example the demo reviews with ``embed`` and ``minilm``:
``fewlabel train src/fewlabel/demo/reviews.csv -o /tmp/minilm -s embed -m minilm``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.common import commit, machine, write_json

HOST = "127.0.0.1"  # loopback only: the benchmark never listens on a public interface
# `fewlabel serve`'s own function, so the benchmark runs exactly what the command runs.
SERVER_CODE = "import typer; from fewlabel.cli.serve_command import serve; typer.run(serve)"
STARTUP_SECONDS = 120  # an embedding backbone takes a few seconds to load; mpnet longer

OPENERS = ["", "Honestly, ", "After a month, ", "Well, ", "To be fair, ", "Overall, ", "So far ", "Sadly, "]
PRODUCTS = [
    "blender", "kettle", "toaster", "vacuum", "lamp", "backpack", "jacket", "keyboard", "mouse", "monitor",
    "phone case", "charger", "headset", "speaker", "camera", "tent", "water bottle", "desk chair", "pillow", "watch",
]  # fmt: skip
VERDICTS = [
    "works perfectly", "broke after two days", "is worth every penny", "feels cheap and flimsy",
    "exceeded my expectations", "stopped charging", "is quiet and fast", "arrived damaged",
    "looks great on my desk", "is a waste of money", "does the job", "is too small",
]  # fmt: skip
ENDINGS = ["", " Would buy again.", " Returning it.", " Five stars.", " Not recommended.", " Fast delivery."]


def review(i: int) -> str:
    """The i-th synthetic product review; distinct for every i."""
    opener = OPENERS[i % len(OPENERS)]
    product = PRODUCTS[(i // len(OPENERS)) % len(PRODUCTS)]
    verdict = VERDICTS[(i // 7) % len(VERDICTS)]
    ending = ENDINGS[(i // 11) % len(ENDINGS)]
    text = f"{opener}the {product} {verdict}.{ending} (order {i})"
    return text[0].upper() + text[1:]


def big_body(request_index: int, size: int, texts: int = 256) -> bytes:
    """A JSON body of about ``size`` bytes: ``texts`` long texts, each a run of distinct reviews."""
    per_text = size // texts - 8  # room for the quotes and commas
    first = 20_000_000 + request_index * 100_000
    out, k = [], first
    for _ in range(texts):
        parts, length = [], 0
        while length < per_text:
            parts.append(review(k))
            length += len(parts[-1]) + 1
            k += 1
        out.append(" ".join(parts)[:per_text])
    return json.dumps({"texts": out}).encode()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process (Linux), to see whether serving grows it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def fresh_home() -> str:
    """A new FEWLABEL_HOME for the server: an empty embedding cache, the installed backbones kept."""
    from fewlabel.encoders.backbones import fewlabel_home

    home = Path(tempfile.mkdtemp(prefix="fewlabel-load-test-"))
    if (fewlabel_home() / "models").exists():
        (home / "models").symlink_to(fewlabel_home() / "models")
    return str(home)


class Server:
    """`fewlabel serve` in a subprocess; stops it on exit, whatever happened."""

    def __init__(self, model_dir: Path, port: int, key: str, args: argparse.Namespace, log_path: Path):
        self.argv = [
            sys.executable, "-c", SERVER_CODE, str(model_dir), "--host", HOST, "--port", str(port),
            "--no-access-log", "--max-texts", str(max(256, args.batch)),
            "--batch-wait-ms", str(args.batch_wait_ms), "--max-batch", str(args.max_batch),
            "--engine", args.engine,
        ]  # fmt: skip
        self.home = fresh_home()
        self.env = {
            **os.environ,
            "FEWLABEL_API_KEY": key,
            "FEWLABEL_HOME": self.home,
            "FEWLABEL_PROGRESS": "0",
        }
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)  # the embedding cache it filled; the symlink only

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


async def wait_healthy(client, server: Server) -> float:
    import aiohttp

    start = time.perf_counter()
    while time.perf_counter() - start < STARTUP_SECONDS:
        if server.proc is not None and server.proc.poll() is not None:
            raise SystemExit(f"the server exited with code {server.proc.returncode}:\n{server.log_tail()}")
        try:
            async with client.get("/health", timeout=aiohttp.ClientTimeout(total=2)) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"the server did not answer /health within {STARTUP_SECONDS}s:\n{server.log_tail()}")


def body(request_index: int, batch: int, offset: int = 0) -> dict:
    first = offset + request_index * batch
    if batch == 1:
        return {"text": review(first)}
    return {"texts": [review(first + j) for j in range(batch)]}


async def run_load(client, args: argparse.Namespace) -> dict:
    """Send ``args.requests`` requests from ``args.concurrency`` workers; stop early at ``args.max_seconds``."""
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    next_index = 0
    deadline = time.perf_counter() + args.max_seconds

    async def worker() -> None:
        nonlocal next_index
        while next_index < args.requests and time.perf_counter() < deadline:
            i = next_index
            next_index += 1
            start = time.perf_counter()
            try:
                async with client.post("/predict", json=body(i, args.batch)) as response:
                    answer = await response.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as err:
                errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - start)
            statuses[response.status] = statuses.get(response.status, 0) + 1
            if response.status == 200 and len(answer["predictions"]) != args.batch:
                errors["wrong prediction count"] = errors.get("wrong prediction count", 0) + 1

    start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    seconds, client_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    ok = statuses.get(200, 0)
    lat_ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "seconds": seconds,
        "requests_sent": next_index,
        "requests_ok": ok,
        "stopped_by_time_limit": next_index < args.requests,
        "requests_per_second": ok / seconds,
        "texts_per_second": ok * args.batch / seconds,
        "latency_ms": {
            "p50": float(np.percentile(lat_ms, 50)),
            "p90": float(np.percentile(lat_ms, 90)),
            "p99": float(np.percentile(lat_ms, 99)),
            "max": float(lat_ms.max()),
            "mean": float(lat_ms.mean()),
        },
        "non_2xx": {str(code): n for code, n in sorted(statuses.items()) if not 200 <= code < 300},
        "errors": errors,
        "client_cpu_ms_per_request": 1000 * client_cpu / max(next_index, 1),
    }


async def run_big_clients(client, args: argparse.Namespace, stop: asyncio.Event) -> dict:
    """``args.big_clients`` clients sending large requests back to back until ``stop`` is set."""
    import aiohttp

    bodies = [big_body(i, args.big_bytes) for i in range(4)]  # built once: the client's CPU is the server's
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    sent = 0

    async def worker(w: int) -> None:
        nonlocal sent
        i = w
        while not stop.is_set():
            start = time.perf_counter()
            sent += 1
            try:
                async with client.post(
                    "/predict", data=bodies[i % len(bodies)], headers={"content-type": "application/json"}
                ) as response:
                    await response.read()
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
                continue
            statuses[response.status] = statuses.get(response.status, 0) + 1
            if response.status == 200:
                latencies.append(time.perf_counter() - start)
            elif response.status == 503 and retry_after:
                await asyncio.sleep(min(float(retry_after), 5))
            i += args.big_clients

    tasks = [asyncio.ensure_future(worker(w)) for w in range(args.big_clients)]
    await stop.wait()
    for task in tasks:
        task.cancel()  # a request still in flight is left out
    await asyncio.gather(*tasks, return_exceptions=True)
    lat_ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "clients": args.big_clients,
        "body_bytes": len(bodies[0]),
        "texts_per_request": 256,
        "requests_sent": sent,
        "requests_ok": statuses.get(200, 0),
        "statuses": {str(code): n for code, n in sorted(statuses.items())},
        "errors": errors,
        "latency_ms": {"p50": float(np.percentile(lat_ms, 50)), "max": float(lat_ms.max())},
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (with psutil)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def benchmark(args: argparse.Namespace) -> dict:
    import aiohttp

    port, key = free_port(), secrets.token_urlsafe(24)
    log_path = Path(tempfile.mkdtemp(prefix="fewlabel-load-test-log-")) / "server.log"
    # aiohttp, not httpx: measured here, httpx's client spent about 2 ms of CPU per request and
    # aiohttp's 0.2 ms, and on a 2-core machine the client's CPU is taken from the server.
    connector = aiohttp.TCPConnector(limit=args.concurrency + args.big_clients)
    with Server(args.model_dir, port, key, args, log_path) as server:
        assert server.proc is not None
        async with aiohttp.ClientSession(
            base_url=f"http://{HOST}:{port}",
            headers={"X-API-Key": key},
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=args.request_timeout),
        ) as client:
            startup = await wait_healthy(client, server)
            async with client.get("/model") as response:
                info = await response.json()

            async def warm(i: int) -> None:
                async with client.post("/predict", json=body(i, args.batch, offset=10_000_000)) as r:
                    await r.read()

            # Untimed: opens the connections and runs the first requests (distinct texts, not reused later).
            await asyncio.gather(
                *(warm(i) for i in range(args.concurrency)),
                return_exceptions=True,  # a failure here shows again, counted, in the timed run
            )
            rss_before, cpu_before = rss_mb(server.proc.pid), cpu_seconds(server.proc.pid)
            stop = asyncio.Event()
            big = asyncio.ensure_future(run_big_clients(client, args, stop)) if args.big_clients else None
            if big is not None:
                await asyncio.sleep(0.5)  # the large requests are queued before the measured ones start
            try:
                result = await run_load(client, args)
            finally:
                stop.set()
            big_result = await big if big is not None else None
            rss_after, cpu_after = rss_mb(server.proc.pid), cpu_seconds(server.proc.pid)
    if result["non_2xx"] or result["errors"]:
        print(f"server log: {log_path}")
    else:
        shutil.rmtree(log_path.parent, ignore_errors=True)
    return {
        **result,
        "big_clients": big_result,
        "server_cpu_ms_per_request": 1000 * (cpu_after - cpu_before) / max(result["requests_sent"], 1),
        "startup_seconds": startup,
        "server_rss_mb": {"before": rss_before, "after": rss_after},
        "model": {
            "strategy": info["strategy"].get("name"),
            "backbone": (info.get("backbone") or {}).get("name"),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path, help="a model directory written by `fewlabel train`")
    parser.add_argument("--requests", type=int, default=2000, help="requests to send (default 2000)")
    parser.add_argument("--engine", default="auto", help="the server's --engine (default auto)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at once (default 16)")
    parser.add_argument(
        "--batch", type=int, default=1, help="texts per request; 1 sends {'text': ...} (default 1)"
    )
    parser.add_argument(
        "--batch-wait-ms", type=float, default=5.0, help="the server's --batch-wait-ms (default 5)"
    )
    parser.add_argument("--max-batch", type=int, default=64, help="the server's --max-batch (default 64)")
    parser.add_argument(
        "--max-seconds", type=float, default=300, help="stop sending after this long (default 300)"
    )
    parser.add_argument("--request-timeout", type=float, default=60, help="per-request timeout in seconds")
    parser.add_argument(
        "--big-clients",
        type=int,
        default=0,
        help="extra clients sending large requests back to back meanwhile, not measured (default 0)",
    )
    parser.add_argument(
        "--big-bytes", type=int, default=1_900_000, help="body size of a large request (default 1,900,000)"
    )
    args = parser.parse_args(argv)
    for name in ("requests", "concurrency", "batch", "max_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.big_clients < 0 or not 10_000 <= args.big_bytes <= 2_000_000:
        parser.error("--big-clients must be 0 or more and --big-bytes between 10,000 and 2,000,000")
    if not (args.model_dir / "fewlabel.json").is_file():
        parser.error(f"{args.model_dir}: not a fewlabel model directory")
    try:
        import aiohttp  # noqa: F401
        import psutil  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise SystemExit(
            f"the load test needs aiohttp, psutil and the serve extra ({err}): "
            "pip install 'fewlabel[serve]' aiohttp psutil"
        ) from None

    load_before = os.getloadavg()  # the machine may be shared: a busy one makes every figure worse
    r = asyncio.run(benchmark(args))
    r["load_average"] = {"before": load_before, "after": os.getloadavg()}
    r["thread_settings"] = {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS")}
    lat = r["latency_ms"]
    print(
        f"model {r['model']['strategy']} ({r['model']['backbone'] or 'no backbone'}), batch {args.batch}, "
        f"concurrency {args.concurrency}, server ready in {r['startup_seconds']:.1f}s\n"
        f"{r['requests_ok']}/{r['requests_sent']} requests OK in {r['seconds']:.1f}s"
        f"{' (stopped by --max-seconds)' if r['stopped_by_time_limit'] else ''}: "
        f"{r['requests_per_second']:.0f} requests/s, {r['texts_per_second']:.0f} texts/s\n"
        f"latency p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms\n"
        f"non-2xx: {r['non_2xx'] or 'none'}; errors: {r['errors'] or 'none'}; "
        f"server RSS {r['server_rss_mb']['before'] or 0:.0f} -> {r['server_rss_mb']['after'] or 0:.0f} MB; "
        f"CPU per request: server {r['server_cpu_ms_per_request']:.2f} ms, "
        f"client {r['client_cpu_ms_per_request']:.2f} ms"
    )
    print(
        f"load average (1, 5, 15 min) {' '.join(f'{x:.2f}' for x in r['load_average']['before'])} before, "
        f"{' '.join(f'{x:.2f}' for x in r['load_average']['after'])} after"
        + (f"; {r['thread_settings']}" if r["thread_settings"] else "")
    )
    if r["big_clients"]:
        b = r["big_clients"]
        print(
            f"meanwhile {b['clients']} clients sent {b['requests_sent']} requests of {b['body_bytes']} bytes "
            f"({b['texts_per_request']} texts): {b['requests_ok']} OK, statuses {b['statuses']}, "
            f"errors {b['errors'] or 'none'}; latency p50 {b['latency_ms']['p50']:.0f} ms, "
            f"max {b['latency_ms']['max']:.0f} ms"
        )
    path = write_json(
        "load_test",
        {
            "command": "python -m benchmarks.load_test "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commit": commit(),
            "machine": machine(),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            **r,
        },
    )
    print(f"wrote {path}")
    return 0 if not r["non_2xx"] and not r["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
