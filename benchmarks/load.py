"""Load and fault benchmark of ``kgmm serve`` on the loopback interface.

Starts the real service (``python -m kgmm.cli serve``, a separate process) on 127.0.0.1 and
runs N concurrent clients for T seconds against ``POST /answer`` with the OpenMoji-scenes
test questions and their images; prints latency percentiles, throughput and errors.

With ``--neo4j-restart`` the service is started with ``--backend neo4j`` against a Neo4j
server of its own (``scripts/neo4j_server.py``, loaded with the KG around the benchmark's
objects), and while the clients run, the Neo4j server is restarted; a prober asks ``/cypher``
and ``/healthz`` every 0.25 s. It reports whether ``/answer`` kept answering, what
``/cypher`` said while Neo4j was down (expected: 503 ``/problems/store-unavailable``), and how
soon after Neo4j was back ``/cypher`` answered 200 again.

With ``--fuzz`` it runs Schemathesis (every phase and check, real PNGs for the image part)
against the same service with the real model instead, and reports whether any request made a
500.

Usage::

    python benchmarks/load.py --model /tmp/vqa/model-parsed --bench /tmp/om2k \\
        [--clients 32] [--seconds 30] [--cold] [--neo4j-restart] [--fuzz] [--json FILE]

``--cold`` sends a different image with every request (one pixel changed, re-encoded), so the
service's per-image feature cache never hits: the worst case. By default the 200 test images
are reused with their 5 questions each, as a VQA client would.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


# -- workload ------------------------------------------------------------------------------
def load_workload(bench: Path, split: str = "test2015", cold: int = 0) -> list[tuple[bytes, str]]:
    """(image bytes, question) pairs of a benchmark split; ``cold``: that many unique images."""
    questions = json.loads((bench / "questions" / f"v2_OpenEnded_mscoco_{split}_questions.json")
                           .read_text(encoding="utf-8"))["questions"]
    images: dict[int, bytes] = {}
    pairs = []
    for q in questions:
        image_id = q["image_id"]
        if image_id not in images:
            images[image_id] = (bench / "images" / split /
                                f"COCO_{split}_{image_id:012d}.jpg").read_bytes()
        pairs.append((images[image_id], q["question"]))
    if not cold:
        return pairs
    from PIL import Image

    unique = []
    for i in range(cold):
        data, question = pairs[i % len(pairs)]
        image = Image.open(io.BytesIO(data)).convert("RGB")
        image.putpixel((i % image.width, (i // image.width) % image.height),
                       (i % 256, (i * 7) % 256, (i * 13) % 256))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=92)
        unique.append((buffer.getvalue(), question))
    return unique


# -- the service ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """``kgmm serve`` in a child process on a free loopback port."""

    def __init__(self, model: str, data_dir: str | None, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "kgmm.cli", "serve", "--host", "127.0.0.1", "--port",
               str(self.port), "--model", model, "--no-access-log", "--log-level", "warning",
               *(["--data-dir", data_dir] if data_dir else []), *extra]
        self.log = tempfile.NamedTemporaryFile("w+", prefix="kgmm-serve-", suffix=".log",  # noqa: SIM115
                                               delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, timeout: float = 300.0) -> float:
        import httpx

        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"kgmm serve exited ({self.proc.returncode}):\n"
                                   f"{self.log.read()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"kgmm serve not ready after {timeout:.0f} s")

    def cpu_seconds(self) -> float:
        """User + system CPU time the service process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        os.unlink(self.log.name)


# -- clients -------------------------------------------------------------------------------
@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, key: str) -> None:
        self.statuses[key] = self.statuses.get(key, 0) + 1


async def run_clients(url: str, pairs: list[tuple[bytes, str]], clients: int,
                      seconds: float) -> Run:
    import httpx

    run = Run()
    counter = iter(range(10**12))
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120.0) as http:
        async def client() -> None:
            while time.perf_counter() < deadline:
                data, question = pairs[next(counter) % len(pairs)]
                kind = "image/jpeg"
                started = time.perf_counter()
                try:
                    response = await http.post("/answer", data={"question": question},
                                               files={"image": ("scene.jpg", data, kind)})
                except httpx.HTTPError as exc:
                    run.count(type(exc).__name__)
                    run.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - started
                run.count(str(response.status_code))
                if response.status_code == 200:
                    run.latencies.append(elapsed)
                else:
                    run.errors.append(f"{response.status_code}: {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        run.seconds = time.perf_counter() - started
    return run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def summary(run: Run, clients: int) -> dict[str, Any]:
    lat = run.latencies
    return {
        "clients": clients, "seconds": round(run.seconds, 1), "requests": sum(
            run.statuses.values()), "ok": len(lat),
        "errors": sum(v for k, v in run.statuses.items() if k != "200"),
        "throughput_rps": round(len(lat) / run.seconds, 1) if run.seconds else 0.0,
        "p50_ms": round(percentile(lat, 50) * 1000, 1),
        "p90_ms": round(percentile(lat, 90) * 1000, 1),
        "p99_ms": round(percentile(lat, 99) * 1000, 1),
        "max_ms": round(max(lat) * 1000, 1) if lat else float("nan"),
        "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else float("nan"),
        "statuses": dict(sorted(run.statuses.items())),
    }


# -- Neo4j restart -------------------------------------------------------------------------
def neo4j_module() -> Any:
    name = "kgmm_scripts_neo4j_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "neo4j_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def kg_slice(model: Path, bench: Path) -> tuple[Any, list[str]]:
    """The KG around the benchmark's objects (their 1-hop neighbourhood), as GraphData."""
    from kgmm.graph.compiled import CompiledKG
    from kgmm.graph.model import GraphData, Triple

    kg = CompiledKG.load(model / "kg")
    manifest = json.loads((bench / "manifest.json").read_text(encoding="utf-8"))
    seeds = [o["synset_id"] for o in manifest["objects"] if kg.find_index(o["synset_id"])
             is not None]
    keep: set[int] = set()
    for seed in seeds:
        index = kg.index_of(seed)
        keep.add(index)
        keep.update(kg.out_edges(index)[0].tolist())
        keep.update(kg.in_edges(index)[0].tolist())
    relation_ids = [r.id for r in kg.relations()]
    triples = []
    for index in keep:
        for other, rel in zip(*(a.tolist() for a in kg.out_edges(index)), strict=True):
            if other in keep:
                triples.append(Triple(kg.id_of(index), relation_ids[rel], kg.id_of(other)))
    data = GraphData([kg.entity(i) for i in sorted(keep)], kg.relations(), triples,
                     source="kg slice")
    return data, seeds


async def probe(url: str, stop: asyncio.Event, ids: list[str],
                timeline: list[tuple[float, str, int, str, float]], t0: float) -> None:
    import httpx

    query = "MATCH (e:Entity {id: $id})-[r]->(n:Entity) RETURN n.label AS label LIMIT 5"
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                sent = time.perf_counter()
                r = await http.post("/cypher", json={"query": query,
                                                     "params": {"id": ids[i % len(ids)]}})
                kind = r.json().get("type", "") if r.status_code != 200 else ""
                timeline.append((sent - t0, "cypher", r.status_code, kind,
                                 time.perf_counter() - sent))
                h = await http.get("/healthz")
                timeline.append((time.perf_counter() - t0, "healthz", h.status_code,
                                 h.json()["store"]["status"], 0.0))
            except httpx.HTTPError as exc:
                timeline.append((time.perf_counter() - t0, "cypher", 0, type(exc).__name__, 0.0))
            await asyncio.sleep(0.25)


def restart_check(args: argparse.Namespace, pairs: list[tuple[bytes, str]]) -> dict[str, Any]:
    module = neo4j_module()
    home = Path(tempfile.mkdtemp(prefix="kgmm-load-neo4j-"))
    server = module.Neo4jTestServer(port=free_port(), home=home / "db")
    print("starting Neo4j …", flush=True)
    server.start()
    try:
        from kgmm.graph.stores import open_store

        data, seeds = kg_slice(Path(args.model), Path(args.bench))
        store = open_store("neo4j", uri=server.uri, user=server.user, password=server.password)
        store.import_data(data)
        store.close()
        print(f"Neo4j {server.uri}: imported {data.stats()}", flush=True)
        service = Service(args.model, args.data_dir, [
            "--backend", "neo4j", "--neo4j-uri", server.uri, "--neo4j-user", server.user,
            "--neo4j-password", server.password])
        try:
            service.wait_ready()
            events: dict[str, float] = {}

            async def scenario() -> Run:
                t0 = time.perf_counter()
                timeline: list[tuple[float, str, int, str, float]] = []
                stop = asyncio.Event()
                prober = asyncio.create_task(probe(service.url, stop, seeds, timeline, t0))

                def restart() -> None:
                    time.sleep(args.restart_after)
                    events["neo4j_stop"] = time.perf_counter() - t0
                    server.stop()
                    time.sleep(args.down_for)
                    events["neo4j_start"] = time.perf_counter() - t0
                    server.start()
                    events["neo4j_ready"] = time.perf_counter() - t0

                restarter = threading.Thread(target=restart, daemon=True)
                restarter.start()
                run = await run_clients(service.url, pairs, args.clients, args.seconds)
                while restarter.is_alive():
                    await asyncio.sleep(0.25)
                await asyncio.sleep(2.0)  # let the prober see the store back
                stop.set()
                await prober
                events["timeline"] = timeline  # type: ignore[assignment]
                return run

            run = asyncio.run(scenario())
        finally:
            service.stop()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    timeline = events.pop("timeline")  # type: ignore[arg-type]
    stop_at, ready_at = events["neo4j_stop"], events["neo4j_ready"]
    during = [t for t in timeline if t[1] == "cypher" and stop_at + 0.5 < t[0] < ready_at]
    after = [t for t in timeline if t[1] == "cypher" and t[0] > ready_at]
    first_ok = next((t[0] for t in after if t[2] == 200), None)
    cypher_statuses: dict[str, int] = {}
    for t in during:
        key = f"{t[2]} {t[3]}".strip()
        cypher_statuses[key] = cypher_statuses.get(key, 0) + 1
    health_down = sum(1 for t in timeline if t[1] == "healthz" and t[3] == "down")
    return {"answer": summary(run, args.clients), "events_s": {k: round(v, 2) for k, v in
                                                                events.items()},
            "cypher_while_down": cypher_statuses,
            "cypher_503_p50_ms": round(percentile([t[4] for t in during if t[2] == 503], 50)
                                       * 1000, 1),
            "cypher_503_max_ms": round(max((t[4] for t in during if t[2] == 503), default=0)
                                       * 1000, 1),
            "cypher_before_stop": sorted({t[2] for t in timeline
                                          if t[1] == "cypher" and t[0] < stop_at}),
            "healthz_reported_down": health_down,
            "cypher_recovered_after_s": None if first_ok is None else round(first_ok - ready_at,
                                                                             2)}


# -- schemathesis --------------------------------------------------------------------------
_FUZZ_HOOKS = '''
import io

import schemathesis
from hypothesis import strategies as st


@st.composite
def png_images(draw):
    from PIL import Image

    size = (draw(st.integers(1, 256)), draw(st.integers(1, 256)))
    mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P"]))
    buffer = io.BytesIO()
    Image.new(mode, size, draw(st.integers(0, 255))).save(buffer, format="PNG")
    return buffer.getvalue()


schemathesis.openapi.media_type("image/png", png_images())
'''

# The checks' settings (which statuses are documented answers, which checks a JSON schema
# cannot support) are shared with the test suite.
FUZZ_CONFIG = REPO / "tests" / "service" / "schemathesis.toml"


def fuzz(args: argparse.Namespace) -> dict[str, Any]:
    """Schemathesis (all phases, all checks) against ``kgmm serve`` with the real model."""
    work = Path(tempfile.mkdtemp(prefix="kgmm-fuzz-"))
    (work / "kgmm_fuzz_hooks.py").write_text(_FUZZ_HOOKS, encoding="utf-8")
    service = Service(args.model, args.data_dir, ["--backend", "rdflib"])
    try:
        service.wait_ready()
        cpu_before = service.cpu_seconds()
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "kgmm_fuzz_hooks",
               "PYTHONPATH": os.pathsep.join([str(work), os.environ.get("PYTHONPATH", "")])}
        schemathesis = Path(sys.executable).with_name("schemathesis")
        cmd = [str(schemathesis), "--config-file", str(FUZZ_CONFIG), "--no-color",
               "run", service.url + "/openapi.json", "--max-examples",
               str(args.fuzz_examples), "--seed", "0", "--workers", "1",
               "--report", "json", "--report-json-path", str(work / "report.json")]
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work)
        seconds = time.perf_counter() - started
        server_cpu = service.cpu_seconds() - cpu_before
    finally:
        service.stop()
    print(proc.stdout, proc.stderr[-2000:], sep="\n")
    report: dict[str, Any] = {}
    if (work / "report.json").is_file():
        report = json.loads((work / "report.json").read_text(encoding="utf-8"))
    shutil.rmtree(work, ignore_errors=True)
    return {"exit_code": proc.returncode, "seconds": round(seconds, 1),
            "server_cpu_s": round(server_cpu, 1), "command": " ".join(cmd[1:]),
            "report": report}


# -- main ----------------------------------------------------------------------------------
def print_table(title: str, result: dict[str, Any]) -> None:
    keys = ["clients", "seconds", "requests", "ok", "errors", "throughput_rps", "p50_ms",
            "p90_ms", "p99_ms", "max_ms"]
    print(f"\n{title}")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    print("| " + " | ".join(str(result[k]) for k in keys) + " |")
    print(f"statuses: {result['statuses']}")
    if "server_cpu_ms_per_answer" in result:
        print(f"CPU per answer: service {result['server_cpu_ms_per_answer']} ms, load client "
              f"{result['client_cpu_ms_per_answer']} ms; the service used "
              f"{result['server_cpu_share']} cores on average")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="/tmp/vqa/model-parsed")
    parser.add_argument("--bench", default="/tmp/om2k", help="OpenMoji-scenes directory")
    parser.add_argument("--data-dir", default=str(REPO / ".kgmm-home"))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--cold", action="store_true", help="a new image with every request")
    parser.add_argument("--neo4j-restart", action="store_true")
    parser.add_argument("--restart-after", type=float, default=5.0)
    parser.add_argument("--down-for", type=float, default=3.0)
    parser.add_argument("--fuzz", action="store_true",
                        help="run Schemathesis against the service instead of the load test")
    parser.add_argument("--fuzz-examples", type=int, default=100,
                        help="Schemathesis examples per operation and phase")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    pairs = [] if args.fuzz else load_workload(Path(args.bench), cold=2000 if args.cold else 0)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(),
               "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    results: dict[str, Any] = {"machine": machine, "workload": {
        "pairs": len(pairs), "cold": args.cold, "bench": args.bench, "model": args.model}}
    if args.fuzz:
        results["fuzz"] = fuzz(args)
        machine["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        return results["fuzz"]["exit_code"]
    if args.neo4j_restart:
        results["neo4j_restart"] = restart_check(args, pairs)
        print_table("POST /answer during a Neo4j restart", results["neo4j_restart"]["answer"])
        print(json.dumps({k: v for k, v in results["neo4j_restart"].items() if k != "answer"},
                         indent=1))
    else:
        service = Service(args.model, args.data_dir, ["--backend", "none"])
        try:
            ready = service.wait_ready()
            print(f"service ready in {ready:.1f} s at {service.url}", flush=True)
            cpu_before, client_before = service.cpu_seconds(), time.process_time()
            run = asyncio.run(run_clients(service.url, pairs, args.clients, args.seconds))
            server_cpu, client_cpu = (service.cpu_seconds() - cpu_before,
                                      time.process_time() - client_before)
        finally:
            service.stop()
        results["answer"] = summary(run, args.clients)
        ok = max(results["answer"]["ok"], 1)
        results["answer"]["server_cpu_ms_per_answer"] = round(server_cpu / ok * 1000, 1)
        results["answer"]["client_cpu_ms_per_answer"] = round(client_cpu / ok * 1000, 1)
        results["answer"]["server_cpu_share"] = round(server_cpu / run.seconds, 2)
        print_table(f"POST /answer, {args.clients} clients, {args.seconds:g} s"
                    + (" (cold: a new image each request)" if args.cold else ""),
                    results["answer"])
        if run.errors:
            print("first errors:", *run.errors[:5], sep="\n  ")
    machine["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average before {machine['loadavg_before']}, after {machine['loadavg_after']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
