"""Batch VQA evaluation: stream a split through a model (and a baseline) into a run folder.

``run_vqa_eval(VQAEvalConfig(...))`` reads one or more splits of any VQA v2 / OK-VQA-format
dataset, answers them in batches with :meth:`kgmm.pipeline.KGMM.answer_batch`, appends one
JSON line per question to ``predictions.jsonl`` after every batch (so a crashed run resumes
where it stopped), then writes ``metrics.json``, the official results files, PNG plots and
``report.md`` (see :mod:`kgmm.evaluation.run_folder` for the folder).

Accuracy is the official VQA accuracy (:func:`kgmm.data.vqa_eval.vqa_accuracy`, answers
normalised as the official script does), aggregated as the script does (percent, 2 decimals).
Questions without a ``question_family`` count in the family ``"all"``. A split without
annotations (test) is answered and written as an official results file, unscored.

The baseline (``--baseline``) is either another model directory, or bare VQA weights
(``config.json`` + ``model.safetensors``, as ``VQAModel.save_pretrained`` writes — e.g. the
no-KG baseline ``kgmm train`` trains beside the KG model), which then run on the model's own
perception (image encoder, scene parser, KG): the set-up they were trained in.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgmm.graph.errors import InputError, KGMMError

from . import metrics as M
from .progress import ProgressCallback
from .report import cell, provenance, signed, table
from .run_folder import RunFolder, fingerprint

#: Names of the two evaluated models in rows, metrics and plots.
MODEL, BASELINE = "model", "baseline"
#: Rows per ``write_question_records`` call.
RECORD_CHUNK = 500
#: A prediction counts as ``correct`` in an inspection record from this VQA accuracy (at
#: least two of ten humans gave the answer).
CORRECT_FROM = 0.5


class EvaluationError(KGMMError):
    """An evaluation cannot run as asked (device, options, missing optional parts)."""


@dataclass(frozen=True)
class VQAEvalConfig:
    """What ``kgmm eval vqa`` evaluates, and how.

    ``limit`` takes the first questions of each split; ``evidence`` also stores each answer's
    evidence (slower; on by default when ``records`` is); ``store_options`` (Neo4j address
    and credentials) are never written to the run folder.
    """

    data: Path
    splits: tuple[str, ...]
    model: Path
    out: Path
    baseline: Path | None = None
    data_dir: Path | None = None
    batch_size: int = 32
    top_k: int = 5
    limit: int | None = None
    variant: str = "auto"
    device: str = "auto"
    seed: int = 0
    evidence: bool | None = None
    overwrite: bool = False
    skip_missing_images: bool = False
    records: bool = False
    backend: str = "rdflib"
    store_options: Mapping[str, Any] = field(default_factory=dict)
    calibration_bins: int = 10

    def recorded(self) -> dict[str, Any]:
        """The settings written to ``run.json`` (no credentials)."""
        return {"data": str(self.data), "splits": list(self.splits), "model": str(self.model),
                "baseline": str(self.baseline) if self.baseline else None,
                "data_dir": str(self.data_dir) if self.data_dir else None,
                "batch_size": self.batch_size, "top_k": self.top_k, "limit": self.limit,
                "variant": self.variant, "device": self.device, "seed": self.seed,
                "evidence": self.wants_evidence, "skip_missing_images": self.skip_missing_images,
                "records": self.records, "backend": self.backend,
                "calibration_bins": self.calibration_bins}

    @property
    def wants_evidence(self) -> bool:
        return self.records if self.evidence is None else self.evidence


@dataclass
class VQARunResult:
    """What :func:`run_vqa_eval` did: the folder, the metrics, and this session's counts."""

    run: RunFolder
    metrics: dict[str, Any]
    answered: int  # questions answered by this call (not the resumed ones)
    resumed: int  # questions already in predictions.jsonl
    seconds: float
    records_written: int | None = None

    @property
    def path(self) -> Path:
        return self.run.path


# -- models --------------------------------------------------------------------------------
def resolve_model_path(path: str | os.PathLike[str] | None, data_dir: Path | None) -> Path:
    """A model directory as ``KGMM.load`` finds it: a path, a bare name under
    ``<KGMM_HOME>/models/``, or the default model."""
    from kgmm.graph.home import kgmm_home
    from kgmm.pipeline import default_model_path

    if path is None:
        return default_model_path(data_dir)
    candidate = Path(path)
    if not candidate.exists() and os.sep not in str(path):
        return kgmm_home(data_dir) / "models" / str(path)
    return candidate


def baseline_kind(path: Path) -> str:
    """``"model"`` (a kgmm model directory) or ``"vqa-weights"`` (bare VQA weights).

    Raises:
        ModelError: neither.
    """
    from kgmm.pipeline import MODEL_FILE, ModelError

    if (path / MODEL_FILE).is_file():
        return "model"
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return "vqa-weights"
    if not path.exists():
        raise ModelError(f"no baseline at {path}")
    raise ModelError(f"{path} is neither a kgmm model directory ({MODEL_FILE}) nor VQA weights "
                     "(config.json + model.safetensors)")


def load_baseline(path: Path, primary: Any, data_dir: Path | None) -> tuple[Any, bool]:
    """The baseline as a ``KGMM``; the flag says whether it shares ``primary``'s perception.

    Raises:
        ModelError: it cannot be loaded, or its weights do not fit the model's KG/encoders.
    """
    import dataclasses

    from kgmm.pipeline import KGMM, ModelError
    from kgmm.reasoning.vqa_model import VQAModel

    if baseline_kind(path) == "model":
        return KGMM.load(path, data_dir=data_dir), False
    try:
        vqa = VQAModel.from_pretrained(path)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelError(f"{path}: cannot load the baseline's VQA weights ({exc})") from None
    parts = primary.parts
    expected = parts.kg.content_hash
    if vqa.config.kg_content_hash and vqa.config.kg_content_hash != expected:
        raise ModelError(f"{path}: the baseline was trained with KG "
                         f"{vqa.config.kg_content_hash[:12]}, the model uses {expected[:12]}")
    image_dim = getattr(parts.image_encoder, "dim", vqa.config.image_dim)
    if vqa.config.image_dim != image_dim:
        raise ModelError(f"{path}: the baseline expects {vqa.config.image_dim}-d image features; "
                         f"the model's image encoder gives {image_dim}")
    baseline = KGMM(dataclasses.replace(parts, vqa=vqa), path)
    # Same encoders and parser: let the baseline reuse the image features the model computed
    # for the same images (KGMM caches them per image content).
    if hasattr(primary, "_features") and hasattr(baseline, "_features"):
        baseline._features = primary._features
        return baseline, True
    return baseline, False


def resolve_device(requested: str, model: Any) -> dict[str, Any]:
    """Pick the device: ``auto`` is CUDA when present and the model can be placed on it.

    ``KGMM`` has no device placement yet (no ``.to``): everything runs on the CPU, and an
    explicit ``cuda`` is refused rather than silently ignored.
    """
    import torch

    cuda = bool(torch.cuda.is_available())
    placeable = callable(getattr(model, "to", None))
    info: dict[str, Any] = {"requested": requested, "cuda_available": cuda,
                            "torch_threads": torch.get_num_threads()}
    if cuda:
        info["cuda_device"] = torch.cuda.get_device_name(0)
    if requested not in ("auto", "cpu") and not requested.startswith("cuda"):
        raise EvaluationError(f"unknown device {requested!r}; use auto, cpu or cuda[:N]")
    want = ("cuda" if cuda else "cpu") if requested == "auto" else requested
    if want.startswith("cuda") and not cuda:
        raise EvaluationError(f"--device {requested}: torch sees no CUDA device")
    if want.startswith("cuda") and not placeable:
        if requested != "auto":
            raise EvaluationError("--device cuda: this kgmm's KGMM pipeline has no device "
                                  "placement yet; use --device cpu")
        info["note"] = "CUDA is present but KGMM has no device placement yet: ran on the CPU"
        want = "cpu"
    if want != "cpu":
        model.to(want)
    info["resolved"] = want
    return info


# -- data ----------------------------------------------------------------------------------
def family_of(record: Any) -> str:
    """The record's ``question_family`` (a list joined with ``+``), else ``"all"``."""
    family = record.extra.get("question_family")
    if family is None or family == "":
        return "all"
    return "+".join(map(str, family)) if isinstance(family, list | tuple) else str(family)


def load_splits(cfg: VQAEvalConfig) -> dict[str, list[Any]]:
    """``split → records`` to evaluate (first ``limit`` of each).

    Raises:
        SourceNotFoundError: a split's files are missing.
        InputError: malformed files; images missing (unless ``skip_missing_images``).
    """
    from kgmm.data.vqa import load_vqa

    out: dict[str, list[Any]] = {}
    for split in cfg.splits:
        dataset = load_vqa(cfg.data, split, variant=cfg.variant,  # type: ignore[arg-type]
                           num_answers=None)
        records = list(dataset)[:cfg.limit] if cfg.limit is not None else list(dataset)
        missing = [r for r in records if r.image_path is None]
        if missing and not cfg.skip_missing_images:
            first = dataset.missing_images[0] if dataset.missing_images else missing[0].image_id
            raise InputError(f"{len(missing)} question(s) of split {split!r} have no image on "
                             f"disk (first: {first}); pass --skip-missing-images to leave "
                             "them out", source=cfg.data)
        out[split] = [r for r in records if r.image_path is not None]
    return out


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- answering -----------------------------------------------------------------------------
def _answer_dict(answer: Any, accuracy: float | None, latency_ms: float,
                 evidence: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "answer": answer.text, "entity_id": answer.entity_id, "score": round(answer.score, 6),
        "alternatives": [{"text": a.text, "score": round(a.score, 6), "entity_id": a.entity_id}
                         for a in answer.alternatives],
        "accuracy": accuracy, "latency_ms": round(latency_ms, 3)}
    if evidence and answer.evidence is not None:
        from dataclasses import asdict

        out["evidence"] = asdict(answer.evidence)
    return out


def _answer_chunk(model: Any, chunk: Sequence[Any], top_k: int,
                  evidence: bool) -> tuple[list[Any], float]:
    """Answers (an exception instance for a question that could not be answered) and the
    seconds taken. A batch that fails on bad input is retried one question at a time."""
    from kgmm.reasoning.inputs import ImageInputError, QuestionInputError

    started = time.perf_counter()
    pairs = [(str(r.image_path), r.question) for r in chunk]
    try:
        answers: list[Any] = model.answer_batch(pairs, top_k=top_k, evidence=evidence)
    except (ImageInputError, QuestionInputError):
        answers = []
        for pair in pairs:
            try:
                answers.append(model.answer_batch([pair], top_k=top_k, evidence=evidence)[0])
            except (ImageInputError, QuestionInputError) as exc:
                answers.append(exc)
    return answers, time.perf_counter() - started


def _prediction(answer: Any, record: Any, seconds: float, size: int,
                evidence: bool) -> dict[str, Any]:
    from kgmm.data.vqa_eval import vqa_accuracy

    latency = 1000 * seconds / size
    if isinstance(answer, Exception):
        return {"answer": "", "entity_id": None, "score": 0.0, "alternatives": [],
                "accuracy": 0.0 if record.answers else None, "latency_ms": round(latency, 3),
                "error": f"{type(answer).__name__}: {answer}"}
    accuracy = vqa_accuracy(answer.text, record.answers) if record.answers else None
    return _answer_dict(answer, accuracy, latency, evidence)


def _row(split: str, record: Any) -> dict[str, Any]:
    return {"split": split, "question_id": record.question_id, "image_id": record.image_id,
            "image": str(record.image_path), "question": record.question,
            "family": family_of(record), "question_type": record.question_type,
            "answer_type": record.answer_type}


# -- the run -------------------------------------------------------------------------------
def run_vqa_eval(cfg: VQAEvalConfig, *, progress: ProgressCallback | None = None,
                 log: Callable[[str], None] | None = None) -> VQARunResult:
    """Evaluate (or resume evaluating) ``cfg`` into ``cfg.out``; see the module docstring.

    Raises:
        SourceNotFoundError, InputError: missing or malformed split files or images.
        ModelError: a model or baseline directory that cannot be loaded.
        RunConflictError: ``cfg.out`` holds another run (and ``overwrite`` is off).
        EvaluationError: an impossible device; ``records`` without ``kgmm.inspection``.
    """
    import numpy as np
    import torch

    from kgmm.pipeline import KGMM, read_model_manifest

    say = log or (lambda _m: None)
    if cfg.batch_size < 1:
        raise EvaluationError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    if cfg.records:
        _inspection_api()  # fail before hours of answering, not after
    splits = load_splits(cfg)
    model_path = Path(cfg.model)
    read_model_manifest(model_path)  # typed errors before anything is written
    models_info: dict[str, Any] = {MODEL: {"path": str(model_path.resolve()),
                                           "fingerprint": fingerprint(model_path)}}
    if cfg.baseline is not None:
        kind = baseline_kind(Path(cfg.baseline))
        models_info[BASELINE] = {"path": str(Path(cfg.baseline).resolve()), "kind": kind,
                                 "fingerprint": fingerprint(cfg.baseline)}

    identity = {"data": str(Path(cfg.data).resolve()), "splits": list(cfg.splits),
                "variant": cfg.variant,
                "models": {k: v["fingerprint"] for k, v in models_info.items()}}
    RunFolder.check(cfg.out, kind="vqa", identity=identity, overwrite=cfg.overwrite)

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    model = KGMM.load(model_path, data_dir=cfg.data_dir)
    baseline, shared = (load_baseline(Path(cfg.baseline), model, cfg.data_dir)
                        if cfg.baseline is not None else (None, False))
    if baseline is not None:
        models_info[BASELINE]["shares_perception"] = shared
    device = resolve_device(cfg.device, model)
    if baseline is not None and device["resolved"] != "cpu":
        baseline.to(device["resolved"])
    say(f"loaded model{'s' if baseline else ''} in {time.perf_counter() - t0:.1f} s "
        f"(device {device['resolved']})")

    run = RunFolder.open(cfg.out, kind="vqa", identity=identity, config=cfg.recorded(),
                         seeds={"seed": cfg.seed, "python": cfg.seed, "numpy": cfg.seed,
                                "torch": cfg.seed},
                         device=device, models=models_info,
                         data={"root": str(Path(cfg.data).resolve()),
                               "splits": {s: len(r) for s, r in splits.items()}},
                         overwrite=cfg.overwrite)
    selection = [(split, r) for split, records in splits.items() for r in records]
    done = run.predictions.done_keys(lambda row: (row["split"], row["question_id"]))
    pending = [(s, r) for s, r in selection if (s, r.question_id) not in done]
    resumed = len(selection) - len(pending)
    if resumed:
        say(f"resuming {run.path}: {resumed} of {len(selection)} questions already answered")

    evidence = cfg.wants_evidence
    started = time.perf_counter()
    seconds = {MODEL: 0.0, BASELINE: 0.0}
    answered = 0
    description = f"vqa {'+'.join(cfg.splits)}"
    if progress:
        progress(resumed, len(selection), description)
    try:
        for chunk in batched(pending, cfg.batch_size):
            records = [r for _, r in chunk]
            rows = [_row(split, r) for split, r in chunk]
            for name, mdl in ((MODEL, model), (BASELINE, baseline)):
                if mdl is None:
                    continue
                answers, took = _answer_chunk(mdl, records, cfg.top_k, evidence)
                seconds[name] += took
                for row, answer, record in zip(rows, answers, records, strict=True):
                    row[name] = _prediction(answer, record, took, len(records), evidence)
            run.predictions.append(rows)
            answered += len(rows)
            _note_session(run, answered, started, seconds)  # kept up to date for a kill -9
            if progress:
                progress(resumed + answered, len(selection), description)
    finally:
        _note_session(run, answered, started, seconds)

    rows = _selected_rows(run, selection)
    result = build_metrics(rows, run.manifest, bins=cfg.calibration_bins)
    write_outputs(run, rows, result)
    records_written = None
    if cfg.records:
        records_written = write_records(run, rows, cfg)
    run.finish(overall={k: v.get("overall") for k, v in result["models"].items()},
               questions=len(rows), records_written=records_written)
    say(f"wrote {run.path}")
    return VQARunResult(run, result, answered, resumed, time.perf_counter() - started,
                        records_written)


def _note_session(run: RunFolder, answered: int, started: float,
                  seconds: Mapping[str, float]) -> None:
    run.note(questions=answered, seconds=round(time.perf_counter() - started, 3),
             model_seconds={k: round(v, 3) for k, v in seconds.items() if v})


def _selected_rows(run: RunFolder, selection: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The prediction rows of the selected questions, in selection order (latest row wins)."""
    by_key = {(row["split"], row["question_id"]): row for row in run.predictions.read()}
    return [by_key[(s, r.question_id)] for s, r in selection if (s, r.question_id) in by_key]


# -- metrics -------------------------------------------------------------------------------
def model_metrics(rows: Sequence[Mapping[str, Any]], name: str, bins: int) -> dict[str, Any]:
    """Accuracy overall / per split / family / answer type / question type, latency and
    calibration of one model's answers in ``rows``."""
    mine = [(row, row[name]) for row in rows if name in row]
    scored = [(row, p) for row, p in mine if p.get("accuracy") is not None]

    def acc(item: tuple[Mapping[str, Any], Mapping[str, Any]]) -> float:
        return float(item[1]["accuracy"])

    per_split_family: dict[str, dict[str, float]] = {}
    for split in dict.fromkeys(row["split"] for row, _ in scored):
        per_split_family[split] = M.grouped_percent(
            [x for x in scored if x[0]["split"] == split], lambda x: x[0]["family"], acc)
    confidences = [float(p["score"]) for _, p in scored]
    return {
        "questions": len(mine),
        "scored": len(scored),
        "errors": sum(1 for _, p in mine if p.get("error")),
        "overall": M.percent([acc(x) for x in scored]),
        "per_split": M.grouped_percent(scored, lambda x: x[0]["split"], acc),
        "per_family": M.grouped_percent(scored, lambda x: x[0]["family"], acc),
        "per_split_family": per_split_family,
        "per_answer_type": M.grouped_percent(scored, lambda x: x[0]["answer_type"], acc),
        "per_question_type": M.grouped_percent(scored, lambda x: x[0]["question_type"], acc),
        "latency_ms": M.latency_summary(p["latency_ms"] for _, p in mine),
        "calibration": M.calibration(confidences, [acc(x) for x in scored], bins)
        if scored else None,
    }


def build_metrics(rows: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any], *,
                  bins: int = 10) -> dict[str, Any]:
    """``metrics.json``: per-model metrics, the model − baseline comparison, throughput."""
    names = [n for n in (MODEL, BASELINE) if any(n in row for row in rows)]
    per_model = {n: model_metrics(rows, n, bins) for n in names}
    sessions = manifest.get("sessions", [])
    total_q = sum(s.get("questions", 0) for s in sessions)
    total_s = sum(s.get("seconds", 0.0) for s in sessions)
    for n in names:  # from the rows, so that a killed session's work counts too
        busy = sum(row[n]["latency_ms"] for row in rows if n in row) / 1000
        per_model[n]["throughput_qps"] = round(per_model[n]["questions"] / busy, 3) \
            if busy else None
    splits = list(dict.fromkeys(row["split"] for row in rows))
    out: dict[str, Any] = {
        "run_id": manifest.get("run_id"), "splits": splits,
        "questions": len(rows), "per_split_questions": {
            s: sum(1 for row in rows if row["split"] == s) for s in splits},
        "models": per_model,
        "throughput": {"questions": total_q, "seconds": round(total_s, 3),
                       "questions_per_second": round(total_q / total_s, 3) if total_s else None,
                       "note": "wall time of the sessions: all models, image loading and "
                               "writing; models.*.throughput_qps counts only answer_batch "
                               "time"},
        "latency_note": "latency_ms is per question, amortised over its batch "
                        "(batch seconds / batch size); --batch-size 1 gives single-question "
                        "latency",
    }
    if BASELINE in per_model:
        a, b = per_model[MODEL], per_model[BASELINE]
        out["comparison"] = {
            "overall": M.compare({"overall": a["overall"]}, {"overall": b["overall"]})["overall"],
            "per_split": M.compare(a["per_split"], b["per_split"]),
            "per_family": M.compare(a["per_family"], b["per_family"]),
            "per_answer_type": M.compare(a["per_answer_type"], b["per_answer_type"]),
        }
    return out


# -- outputs -------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def write_outputs(run: RunFolder, rows: Sequence[Mapping[str, Any]],
                  result: Mapping[str, Any]) -> dict[str, Path]:
    """``metrics.json``, ``results/<split>[-baseline].json`` (official results format),
    the plots and ``report.md``; returns the plot paths by name."""
    run.write_json("metrics.json", result)
    models = list(result["models"])
    for split in result["splits"]:
        for name in models:
            suffix = "" if name == MODEL else f"-{name}"
            run.write_json(f"results/{_slug(split)}{suffix}.json",
                           [{"question_id": row["question_id"], "answer": row[name]["answer"]}
                            for row in rows if row["split"] == split and name in row])
    plots = make_plots(run, rows, result)
    run.write_text("report.md", render_report(run.manifest, result, plots, run.path))
    return plots


def make_plots(run: RunFolder, rows: Sequence[Mapping[str, Any]],
               result: Mapping[str, Any]) -> dict[str, Path]:
    """Accuracy per family (pooled and per split), per split, latency, reliability."""
    from . import plots as P

    models = result["models"]
    names = list(models)
    label = {MODEL: "KG model", BASELINE: "baseline"}
    out: dict[str, Path] = {}
    scored = [n for n in names if models[n]["scored"]]
    if scored:
        families = sorted({f for n in scored for f in models[n]["per_family"]})
        out["accuracy_by_family"] = P.grouped_bars(
            run.plots_dir / "accuracy_by_family.png", families,
            {label.get(n, n): [models[n]["per_family"].get(f) for f in families] for n in scored},
            title="VQA accuracy per question family (all splits)")
        splits = [s for s in result["splits"] if any(s in models[n]["per_split"] for n in scored)]
        out["accuracy_by_split"] = P.grouped_bars(
            run.plots_dir / "accuracy_by_split.png", splits,
            {label.get(n, n): [models[n]["per_split"].get(s) for s in splits] for n in scored},
            title="VQA accuracy per split")
        if len(splits) > 1:
            for split in splits:
                fams = sorted({f for n in scored
                               for f in models[n]["per_split_family"].get(split, {})})
                out[f"accuracy_by_family_{split}"] = P.grouped_bars(
                    run.plots_dir / f"accuracy_by_family_{_slug(split)}.png", fams,
                    {label.get(n, n): [models[n]["per_split_family"].get(split, {}).get(f)
                                       for f in fams] for n in scored},
                    title=f"VQA accuracy per question family — {split}")
        out["reliability"] = P.reliability_diagram(
            run.plots_dir / "reliability.png",
            {label.get(n, n): models[n]["calibration"]["bins"] for n in scored},
            eces={label.get(n, n): models[n]["calibration"]["ece"] for n in scored},
            title="Calibration: answer score vs VQA accuracy")
    latencies = {label.get(n, n): [row[n]["latency_ms"] for row in rows if n in row]
                 for n in names}
    out["latency"] = P.histogram(run.plots_dir / "latency.png", latencies,
                                 title="Latency per question (amortised over its batch)",
                                 xlabel="milliseconds")
    return out


def render_report(manifest: Mapping[str, Any], result: Mapping[str, Any],
                  plots: Mapping[str, Path], root: Path) -> str:
    """``report.md``: accuracy tables (model vs baseline), latency, calibration, plots,
    provenance."""
    models = result["models"]
    has_base = BASELINE in models
    m = models[MODEL]
    b = models.get(BASELINE, {})
    data = manifest.get("data", {})
    model_info = manifest.get("models", {})
    lines = [f"# VQA evaluation — `{Path(model_info.get(MODEL, {}).get('path', '?')).name}`", ""]
    lines.append(f"Data `{data.get('root')}`, split(s) {', '.join(result['splits'])}: "
                 f"{result['questions']:,} questions, {m['scored']:,} with annotations.")
    if has_base:
        base = model_info.get(BASELINE, {})
        lines.append(f"Baseline `{base.get('path')}` ({base.get('kind')}"
                     + (", sharing the model's image features and scene parser"
                        if base.get("shares_perception") else "") + ").")
    lines.append("")

    def trio(a: float | None, c: float | None) -> list[str]:
        if not has_base:
            return [cell(a)]
        return [cell(a), cell(c), signed(a - c if a is not None and c is not None else None)]

    heads = ["KG model", "baseline", "Δ"] if has_base else ["model"]
    if m["scored"]:
        lines += ["## Accuracy (official VQA accuracy, %)", ""]
        rows = [[split, result["per_split_questions"].get(split, 0),
                 *trio(m["per_split"].get(split), b.get("per_split", {}).get(split))]
                for split in result["splits"] if split in m["per_split"]]
        rows.append(["**all**", m["scored"], *trio(m["overall"], b.get("overall"))])
        lines += [table(["split", "questions", *heads], rows), ""]
        lines += ["### Per question family", ""]
        fams = sorted(set(m["per_family"]) | set(b.get("per_family", {})))
        lines += [table(["family", *heads],
                        [[f, *trio(m["per_family"].get(f), b.get("per_family", {}).get(f))]
                         for f in fams]), ""]
        types = sorted(set(m["per_answer_type"]) | set(b.get("per_answer_type", {})))
        if types:
            lines += ["### Per answer type", ""]
            lines += [table(["answer type", *heads],
                            [[t, *trio(m["per_answer_type"].get(t),
                                       b.get("per_answer_type", {}).get(t))] for t in types]),
                      ""]
    else:
        lines += ["No annotations for these questions: accuracy is not computed. "
                  "`results/<split>.json` is in the official results format for the "
                  "evaluation server.", ""]

    lines += ["## Speed", ""]
    speed_rows = []
    for name in models:
        lat = models[name]["latency_ms"]
        speed_rows.append([name, models[name]["questions"], models[name].get("throughput_qps"),
                           lat["mean"], lat["p50"], lat["p90"], lat["p99"]])
    lines += [table(["", "questions", "questions/s", "mean ms", "p50 ms", "p90 ms", "p99 ms"],
                    speed_rows), ""]
    thr = result["throughput"]
    lines += [f"End to end: {thr['questions']:,} questions in {thr['seconds']:.1f} s "
              f"({cell(thr['questions_per_second'])} questions/s, all models) over "
              f"{len(manifest.get('sessions', []))} session(s). {result['latency_note']}.", ""]

    if m["scored"]:
        lines += ["## Calibration", "",
                  f"Expected calibration error over {m['calibration']['num_bins']} equal-width "
                  "bins of the answer score against the VQA accuracy: "
                  "ECE = Σ_b (|S_b|/N)·|acc(S_b) − conf(S_b)|.", ""]
        lines += [table(["", "ECE", "mean score", "mean accuracy"],
                        [[n, *(cell(models[n]["calibration"][k], 3)
                               for k in ("ece", "mean_confidence", "mean_accuracy"))]
                         for n in models if models[n]["calibration"]]), ""]
    if plots:
        lines += ["## Plots", ""]
        for name, path in plots.items():
            rel = path.relative_to(root).as_posix()
            lines += [f"![{name}]({rel})", ""]
    errors = {n: models[n]["errors"] for n in models if models[n]["errors"]}
    if errors:
        lines += [f"Unanswerable questions (bad image or question; scored 0): {errors}.", ""]
    lines += ["## Provenance", "", provenance(manifest), ""]
    return "\n".join(lines)


# -- inspection records --------------------------------------------------------------------
def _inspection_api() -> tuple[Callable[..., Any], Any]:
    """``(record_from_answer, open_store)``, or an :class:`EvaluationError` when this
    installation has no ``kgmm.inspection``."""
    try:
        from kgmm.inspection import record_from_answer  # type: ignore[import-not-found]
    except ImportError as exc:
        raise EvaluationError(f"--records needs kgmm.inspection.record_from_answer, which this "
                              f"installation lacks ({exc}); run without --records") from None
    from kgmm.graph.stores import open_store

    return record_from_answer, open_store


def answer_from_row(prediction: Mapping[str, Any], question: str) -> Any:
    """Rebuild a :class:`kgmm.pipeline.Answer` from a prediction row (evidence included when
    the run stored it)."""
    from kgmm.pipeline import Alternative, Answer, Evidence, EvidencePath, LinkedEntity

    evidence = None
    ev = prediction.get("evidence")
    if ev:
        evidence = Evidence(
            linked_entities=[LinkedEntity(**e) for e in ev.get("linked_entities", [])],
            subgraph_nodes=int(ev.get("subgraph_nodes", 0)),
            subgraph_edges=int(ev.get("subgraph_edges", 0)),
            top_nodes=[(str(n), float(s)) for n, s in ev.get("top_nodes", [])],
            paths=[EvidencePath(**p) for p in ev.get("paths", [])],
            score_terms=[(str(n), float(v)) for n, v in ev.get("score_terms", [])])
    return Answer(text=prediction["answer"], entity_id=prediction.get("entity_id"),
                  score=float(prediction["score"]),
                  alternatives=[Alternative(a["text"], float(a["score"]), a.get("entity_id"))
                                for a in prediction.get("alternatives", [])],
                  evidence=evidence, question=question)


def record_ids(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The question ids records are written under: the question id, or ``split:question_id``
    for every row when the run's splits share an id (the store keys records by id)."""
    ids = [str(row["question_id"]) for row in rows]
    if len(set(ids)) == len(ids):
        return ids
    return [f"{row['split']}:{row['question_id']}" for row in rows]


def write_records(run: RunFolder, rows: Sequence[Mapping[str, Any]],
                  cfg: VQAEvalConfig) -> int:
    """Write the model's inspection record of every answered question to the store, in
    chunks of :data:`RECORD_CHUNK` (each all or nothing); returns how many were written.

    Only the model's answers are written: the store keys records by question id (a question
    written again replaces the older record), and the baseline has no evidence to inspect.
    """
    record_from_answer, open_store = _inspection_api()
    model_path = run.manifest.get("models", {}).get(MODEL, {}).get("path", MODEL)
    store = open_store(cfg.backend, data_dir=cfg.data_dir, **dict(cfg.store_options))
    written = 0
    try:
        chunk: list[Any] = []
        for row, qid in zip(rows, record_ids(rows), strict=True):
            prediction = row.get(MODEL)
            if prediction is None or prediction.get("error"):
                continue
            accuracy = prediction.get("accuracy")
            chunk.append(record_from_answer(
                answer_from_row(prediction, row["question"]), question_id=qid,
                image=row["image"], model=model_path,
                correct=None if accuracy is None else accuracy >= CORRECT_FROM,
                run=run.run_id, accuracy=accuracy))
            if len(chunk) >= RECORD_CHUNK:
                written += int(store.write_question_records(chunk))
                chunk = []
        if chunk:
            written += int(store.write_question_records(chunk))
    finally:
        store.close()
    return written
