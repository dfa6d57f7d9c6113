"""The review loop on real data: code CodiEsp train notes through the app, review them through
the HTTP API as a coder would, export the memory, train a pack from the store, score dev.

    python bench/review_loop.py --work /tmp/review-loop [--cases 500]

1. **code**: the first N CodiEsp train cases (English, ``text_files_en``) go through the app
   (``icdcoder.api``, in-process coding with the default pack) into a SQLite store;
2. **review**: a simulated coder logs in and, per note, accepts the codes that are in the
   case's gold (``trainD.tsv``), rejects the others, adds the gold codes the system missed
   (those the current catalogue has), each with the English span that ``icdcoder memory
   codiesp``'s alignment finds for its ``trainX.tsv`` evidence (else none), then marks the note
   reviewed; all through ``/login`` and ``/v1/review/...`` with the session's CSRF token;
3. **export**: ``icdcoder memory export --store``;
4. **pack**: ``icdcoder pack build --index-csv ... --memory`` (as ``make pack`` builds the
   CodiEsp-memory pack), then ``icdcoder train --store`` from the reviewed notes on top of it;
5. **score**: ``icdcoder eval --split dev`` of both packs, beside the reference.

Each step is skipped when its output exists (rerun to resume). Prints a summary; writes
``summary.json`` in the work folder. CPU-heavy: about 40 minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's icdcoder, not an installed one

from icdcoder.codiesp import read_split  # noqa: E402
from icdcoder.memory_codiesp import GoldEvidence, align, line_starts, read_x  # noqa: E402

#: ``icdcoder memory codiesp`` pack on dev (README, make eval; the lead's figures).
REFERENCE = {"map": 0.4016, "micro_f1": 0.4440}
USER, PASSWORD = "bench-coder", "bench-coder-password"


def icdcoder(*args: str, log: Path) -> str:
    """Run the CLI of this checkout; its stdout (stderr to ``log``)."""
    started = time.perf_counter()
    with log.open("a") as err:
        done = subprocess.run(
            [sys.executable, "-m", "icdcoder", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            check=False,
        )
    print(
        f"  icdcoder {args[0]} {args[1] if len(args) > 1 else ''}: "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"icdcoder {' '.join(args)} failed ({done.returncode}); see {log}")
    return done.stdout


def scores(output: str) -> dict[str, float]:
    found_map = re.search(r"MAP\s+([0-9.]+)", output)
    found_f1 = re.search(r"micro P / R / F1\s+([0-9.]+) / ([0-9.]+) / ([0-9.]+)", output)
    assert found_map and found_f1, output
    return {
        "map": float(found_map.group(1)),
        "micro_p": float(found_f1.group(1)),
        "micro_r": float(found_f1.group(2)),
        "micro_f1": float(found_f1.group(3)),
    }


def code_and_review(args: argparse.Namespace, store_url: str) -> dict[str, Any]:
    """Steps 1 and 2, in this process: the app under a TestClient (real HTTP semantics)."""
    from fastapi.testclient import TestClient

    from icdcoder.api.app import in_process_app
    from icdcoder.api.keys import create_key, key_ring
    from icdcoder.api.users import create_user
    from icdcoder.services.retriever.adapters import load_encoder
    from icdcoder.services.segmenter.core import Segmenter
    from icdcoder.shared.pack import open_pack
    from icdcoder.shared.settings import Settings, StoreConfig
    from icdcoder.shared.store.migrate import open_store

    settings = Settings().with_section(store=StoreConfig(url=store_url))
    store = open_store(settings.store)
    opened = open_pack(settings.pack, index=settings.alphabetic_index)
    cases = read_split(args.data, "train", lang="en", limit=args.cases)
    key = create_key(store, f"bench-{int(time.time())}")
    user = f"{USER}-{int(time.time())}"
    create_user(store, user, PASSWORD)
    app = in_process_app(settings, store=store, opened=opened, keys=key_ring("", store))
    stats: dict[str, Any] = {"cases": len(cases), "pack": opened.pack.id}
    with TestClient(app, follow_redirects=False) as client:
        bearer = {"Authorization": f"Bearer {key}"}
        started = time.perf_counter()
        for case in cases:
            answer = client.post(
                "/v1/notes", json={"id": case.case_id, "text": case.text}, headers=bearer
            )
            assert answer.status_code in (200, 202), answer.text
        waiting = {case.case_id for case in cases}
        while waiting:
            time.sleep(5)
            for note_id in list(waiting):
                status = client.get(f"/v1/notes/{note_id}", headers=bearer).json()["status"]
                if status in ("coded", "failed"):
                    waiting.discard(note_id)
            print(
                f"  coded {len(cases) - len(waiting)}/{len(cases)} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        stats["coding_seconds"] = round(time.perf_counter() - started, 1)

        # the reviewer's evidence for missed codes: the trainX evidence aligned to English spans
        started = time.perf_counter()
        evidence = AlignedEvidence(
            args.data,
            opened.catalogue,
            Segmenter(settings.segmenter),
            load_encoder(opened.pack, settings.retriever, settings.cache_dir),
        )
        login = client.post("/login", data={"username": user, "password": PASSWORD})
        assert login.status_code == 303, login.text
        page = client.get("/review").text
        token = re.search(r'name="token" value="([^"]+)"', page)
        assert token is not None
        headers = {"X-CSRF-Token": token.group(1)}
        counts: dict[str, int] = defaultdict(int)
        for case in cases:
            note = client.get(f"/v1/review/notes/{case.case_id}")
            if note.status_code != 200:
                counts["not_coded"] += 1
                continue
            view = note.json()
            gold = {}
            for raw in case.gold:
                info = opened.catalogue.get(raw)
                if info is None:
                    counts["gold_not_in_catalogue"] += 1
                else:
                    gold[info.code] = raw
            found = {c["code"] for c in view["codes"]}
            decisions: list[dict[str, Any]] = []
            for code in view["codes"]:
                action = "accept" if code["code"] in gold else "reject"
                decisions.append({"code": code["code"], "action": action})
                counts[action] += 1
            missed = [code for code in gold if code not in found]
            spans = evidence.spans(case.case_id, case.text, missed)
            for code in missed:
                offsets = [{"start": s, "end": e} for s, e in spans.get(code, [])]
                decisions.append({"code": code, "action": "add", "evidence": offsets})
                counts["add"] += 1
                counts["add_with_evidence" if offsets else "add_without_evidence"] += 1
            version = view["version"]
            if decisions:
                answer = client.post(
                    f"/v1/review/notes/{case.case_id}/decisions",
                    json={"version": version, "decisions": decisions},
                    headers=headers,
                )
                assert answer.status_code == 200, answer.text
                version = answer.json()["version"]
            done = client.post(
                f"/v1/review/notes/{case.case_id}/reviewed",
                json={"version": version},
                headers=headers,
            )
            assert done.status_code == 200, done.text
            counts["reviewed"] += 1
        stats["review_seconds"] = round(time.perf_counter() - started, 1)
        stats["review"] = dict(counts)
    return stats


class AlignedEvidence:
    """Where the English text says a gold code: ``icdcoder memory codiesp``'s alignment of
    the trainX (Spanish) evidence to a segmenter span of the English text."""

    def __init__(self, data: Path, catalogue: Any, segmenter: Any, encoder: Any) -> None:
        self.catalogue, self.segmenter, self.encoder = catalogue, segmenter, encoder
        self.spanish = {c.case_id: c.text for c in read_split(data, "train", lang="es")}
        self.rows: dict[str, list[GoldEvidence]] = defaultdict(list)
        for row in read_x(data / "train" / "trainX.tsv"):
            self.rows[row.case_id].append(row)
        self._code_vectors: dict[str, Any] = {}

    def _vectors(self, code: str) -> Any:
        if code not in self._code_vectors:
            texts = [t.text for t in self.catalogue.texts_of(code)] or [code]
            self._code_vectors[code] = self.encoder.encode(texts)
        return self._code_vectors[code]

    def spans(self, case_id: str, text: str, codes: list[str]) -> dict[str, list[tuple[int, int]]]:
        from icdcoder.shared.messages import NoteIn

        rows = []
        for row in self.rows.get(case_id, []):
            info = self.catalogue.get(row.code)
            if info is not None and info.code in codes:
                rows.append((info.code, row))
        if not rows:
            return {}
        spans = self.segmenter.segment(NoteIn(note_id=case_id, text=text)).spans
        if not spans:
            return {}
        span_vectors = self.encoder.encode([s.text for s in spans])
        evidence_vectors = self.encoder.encode([row.text for _, row in rows])
        starts = line_starts(text)
        out: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for (code, row), vector in zip(rows, evidence_vectors, strict=True):
            chosen = align(
                row,
                source_length=len(self.spanish.get(case_id, text)),
                target_starts=starts,
                target_length=len(text),
                spans=spans,
                span_vectors=span_vectors,
                code_vectors=self._vectors(code),
                evidence_vector=vector,
            )
            if chosen is not None:
                where = (spans[chosen].start, spans[chosen].end)
                if where not in out[code]:
                    out[code].append(where)
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/codiesp")
    parser.add_argument(
        "--index-csv",
        type=Path,
        default=REPO.parent / "shared/data/icd10cm-index/ICD10CM_2025_Index.csv",
    )
    parser.add_argument("--work", type=Path, required=True, help="folder for store, packs, logs")
    parser.add_argument("--cases", type=int, default=500, help="train cases to code and review")
    parser.add_argument(
        "--skip-memory-pack-eval", action="store_true", help="score only the trained pack"
    )
    parser.add_argument("--no-eval", action="store_true", help="stop before scoring dev")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    store_url = f"sqlite:///{work / 'store.db'}"
    summary_path = work / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.exists() else {}

    def save() -> None:
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")

    if "review" not in summary:
        print("1-2. code and review", flush=True)
        summary.update(code_and_review(args, store_url))
        save()
    memory = work / "memory.jsonl"
    if not memory.exists():
        print("3. export", flush=True)
        summary["export"] = icdcoder(
            "memory", "export", "--store", store_url, "--out", str(memory), log=log
        ).strip()
        save()
    memory_pack, trained_pack = work / "pack-memory", work / "pack-trained"
    if not (memory_pack / "manifest.json").exists():
        print("4a. pack build", flush=True)
        started = time.perf_counter()
        icdcoder(
            "pack",
            "build",
            "--out",
            str(memory_pack),
            "--name",
            "review-loop-memory",
            "--description",
            "Alphabetic Index and the review loop's exported memory",
            "--index-csv",
            str(args.index_csv),
            "--memory",
            str(memory),
            log=log,
        )
        summary["pack_build_seconds"] = round(time.perf_counter() - started, 1)
        save()
    if not (trained_pack / "manifest.json").exists():
        print("4b. train --store", flush=True)
        started = time.perf_counter()
        summary["train"] = icdcoder(
            "train",
            "--store",
            store_url,
            "--pack",
            str(memory_pack),
            "--out",
            str(trained_pack),
            "--name",
            "review-loop-trained",
            "--no-progress",
            log=log,
        ).strip()
        summary["train_seconds"] = round(time.perf_counter() - started, 1)
        save()
    if args.no_eval:
        print(json.dumps(summary, indent=2))
        return 0
    packs = [("trained", trained_pack)]
    if not args.skip_memory_pack_eval:
        packs.append(("memory", memory_pack))
    for name, pack in packs:
        if f"dev_{name}" in summary:
            continue
        print(f"5. eval dev ({name})", flush=True)
        started = time.perf_counter()
        output = icdcoder(
            "eval",
            "--data",
            str(args.data),
            "--split",
            "dev",
            "--pack",
            str(pack),
            "--no-progress",
            "--out",
            str(work / f"reports-{name}"),
            log=log,
        )
        summary[f"dev_{name}"] = scores(output) | {
            "seconds": round(time.perf_counter() - started, 1)
        }
        save()
    print(json.dumps(summary, indent=2))
    for name, _ in packs:
        got, ref = summary[f"dev_{name}"], REFERENCE
        print(
            f"dev {name}: MAP {got['map']:.4f} (reference {ref['map']:.4f}, "
            f"{got['map'] - ref['map']:+.4f}), micro-F1 {got['micro_f1']:.4f} "
            f"(reference {ref['micro_f1']:.4f}, {got['micro_f1'] - ref['micro_f1']:+.4f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
