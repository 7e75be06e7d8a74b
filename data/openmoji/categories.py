"""The benchmark's categories: WordNet synsets an object belongs to through ``hypernym`` /
``instance_hypernym`` paths in the compiled KG.

:data:`CATEGORIES` lists them (``Category``: synset id, the name questions and answers use —
one of the synset's lemmas, normally its label —, the plural, and the article of "is there
_ X"). An object belongs to a category when a chain of ``hypernym`` or ``instance_hypernym``
triples leads from the object's synset to the category's synset; that chain is the
supporting evidence stored with each question (:meth:`Taxonomy.path`).

The **most specific** categories of an object are those of its categories that are not an
ancestor of another of its categories (a poodle is a canine, a carnivore, a mammal and an
animal: the most specific is canine). "What kind of thing is …?" is answered with them; two
objects' **common category** is the most specific category both belong to.

:data:`HELD_OUT` names the categories of the ``test-novel-answers`` split: they never occur as
an answer or in question text in train, val or test, although objects of those categories
appear in train scenes, so a model can only answer them by reading the KG.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.errors import InputError

from .linking import EmojiLink

__all__ = [
    "CATEGORIES",
    "HELD_OUT",
    "TAXONOMY_RELATIONS",
    "Category",
    "Taxonomy",
    "filter_links",
]

#: The relations a category path may follow, from the object up.
TAXONOMY_RELATIONS: tuple[str, ...] = ("hypernym", "instance_hypernym")


@dataclass(frozen=True)
class Category:
    """A category synset and how questions name it."""

    synset_id: str
    name: str
    plural: str
    #: "a", "an" or "any" (mass nouns): how "Is there _ X?" reads.
    article: str = "a"

    @property
    def with_article(self) -> str:
        return f"{self.article} {self.name}"


def _c(synset: str, name: str, plural: str | None = None, article: str | None = None) -> Category:
    if article is None:
        article = "an" if name[0] in "aeiou" else "a"
    return Category(f"wn:{synset}", name, plural or f"{name}s", article)


#: The categories (grouped as animals, food, vehicles, artifacts, plants).
CATEGORIES: tuple[Category, ...] = (
    # animals
    _c("animal.n.01", "animal"),
    _c("mammal.n.01", "mammal"),
    _c("bird.n.01", "bird"),
    _c("insect.n.01", "insect"),
    _c("reptile.n.01", "reptile"),
    _c("invertebrate.n.01", "invertebrate"),
    _c("arthropod.n.01", "arthropod"),
    _c("crustacean.n.01", "crustacean"),
    _c("mollusk.n.01", "mollusk"),
    _c("rodent.n.01", "rodent"),
    _c("ungulate.n.01", "ungulate"),
    _c("ruminant.n.01", "ruminant"),
    _c("carnivore.n.01", "carnivore"),
    _c("canine.n.02", "canine"),
    _c("feline.n.01", "feline"),
    _c("primate.n.02", "primate"),
    _c("aquatic_bird.n.01", "aquatic bird", article="an"),
    # food
    _c("food.n.02", "food", "foods", "any"),
    _c("edible_fruit.n.01", "edible fruit", "edible fruits", "an"),
    _c("vegetable.n.01", "vegetable"),
    _c("dish.n.02", "dish", "dishes"),
    _c("baked_goods.n.01", "baked goods", "baked goods", "any"),
    _c("bread.n.01", "bread", "breads", "any"),
    _c("cake.n.03", "cake"),
    # vehicles
    _c("vehicle.n.01", "vehicle"),
    _c("wheeled_vehicle.n.01", "wheeled vehicle"),
    _c("motor_vehicle.n.01", "motor vehicle"),
    _c("aircraft.n.01", "aircraft", "aircraft", "an"),
    _c("vessel.n.02", "vessel"),
    _c("public_transport.n.01", "public transport", "means of public transport", "any"),
    _c("conveyance.n.03", "conveyance"),
    # artifacts
    _c("musical_instrument.n.01", "musical instrument"),
    _c("container.n.01", "container"),
    _c("clothing.n.01", "clothing", "articles of clothing", "any"),
    _c("building.n.01", "building"),
    _c("structure.n.01", "structure"),
    _c("device.n.01", "device"),
    _c("sports_equipment.n.01", "sports equipment", "pieces of sports equipment", "any"),
    _c("ball.n.01", "ball"),
    _c("plaything.n.01", "toy"),
    _c("tool.n.01", "tool"),
    _c("timepiece.n.01", "timepiece"),
    _c("furniture.n.01", "furniture", "pieces of furniture", "any"),
    _c("fastener.n.02", "fastener"),
    _c("weapon.n.01", "weapon"),
    _c("measuring_instrument.n.01", "measuring instrument"),
    _c("electrical_device.n.01", "electrical device", article="an"),
    _c("place_of_worship.n.01", "place of worship", "places of worship"),
    # plants
    _c("plant.n.02", "plant"),
)

#: Category names held out of train/val/test questions (the ``test-novel-answers`` split).
HELD_OUT: tuple[str, ...] = ("rodent", "musical instrument", "vegetable", "aircraft", "timepiece")


class Taxonomy:
    """Category membership of synsets in a compiled KG, with the supporting paths.

    Args:
        kg: the compiled WordNet.
        categories: the category list (default :data:`CATEGORIES`).

    Raises:
        InputError: a category synset is not in the KG, its name is not one of the synset's
            lemmas, or two categories share a name.
    """

    def __init__(self, kg: CompiledKG, categories: Sequence[Category] = CATEGORIES) -> None:
        self.kg = kg
        self.categories = tuple(categories)
        self.by_name = {c.name: c for c in self.categories}
        if len(self.by_name) != len(self.categories):
            raise InputError("two categories share a name", source="categories")
        self.by_synset = {c.synset_id: c for c in self.categories}
        self._rels = {kg.relation_index(r) for r in TAXONOMY_RELATIONS}
        for c in self.categories:
            index = kg.find_index(c.synset_id)
            if index is None:
                raise InputError(f"category synset {c.synset_id} is not in the KG",
                                 source="categories", field="synset_id")
            if c.name not in (kg.label(index), *kg.aliases(index)):
                raise InputError(f"{c.name!r} is not a lemma of {c.synset_id}",
                                 source="categories", field="name")
        self._paths: dict[str, dict[str, list[str]]] = {}
        # the ancestry among categories, to find the most specific ones
        self._cat_ancestors = {
            c.synset_id: set(self.paths(c.synset_id)) - {c.synset_id} for c in self.categories
        }

    def paths(self, synset_id: str) -> dict[str, list[str]]:
        """Category synset id → the shortest path of synset ids from ``synset_id`` up to it
        (both ends included; ``[synset_id]`` when the synset is itself a category). Ties are
        broken by the KG's edge order, so the result is deterministic."""
        cached = self._paths.get(synset_id)
        if cached is not None:
            return cached
        kg = self.kg
        start = kg.index_of(synset_id)
        parent: dict[int, int] = {start: -1}
        frontier = [start]
        while frontier:
            nxt = []
            for node in frontier:
                targets, rels = kg.out_edges(node)
                for target, rel in zip(targets.tolist(), rels.tolist(), strict=True):
                    if rel in self._rels and target not in parent:
                        parent[target] = node
                        nxt.append(target)
            frontier = nxt
        found: dict[str, list[str]] = {}
        for node in parent:
            node_id = kg.id_of(node)
            if node_id in self.by_synset:
                chain = []
                cursor = node
                while cursor != -1:
                    chain.append(kg.id_of(cursor))
                    cursor = parent[cursor]
                found[node_id] = chain[::-1]
        self._paths[synset_id] = found
        return found

    def path(self, synset_id: str, category: Category | str) -> list[str]:
        """The supporting path from ``synset_id`` to a category (KeyError if not a member)."""
        cat = category if isinstance(category, Category) else self.by_name[category]
        return self.paths(synset_id)[cat.synset_id]

    def triples(self, path: Sequence[str]) -> list[tuple[str, str, str]]:
        """The KG triples ``(subject, relation, object)`` along a path of synset ids."""
        out = []
        for lower, upper in pairwise(path):
            out.append((lower, self.relation_between(lower, upper), upper))
        return out

    def relation_between(self, lower: str, upper: str) -> str:
        """The taxonomy relation of the triple ``lower → upper`` (KeyError if none)."""
        kg = self.kg
        targets, rels = kg.out_edges(kg.index_of(lower))
        goal = kg.index_of(upper)
        for target, rel in zip(targets.tolist(), rels.tolist(), strict=True):
            if target == goal and rel in self._rels:
                return kg.relation_ids[rel]
        raise KeyError(f"no {'/'.join(TAXONOMY_RELATIONS)} triple {lower} → {upper}")

    def categories_of(self, synset_id: str) -> list[Category]:
        """Every category the synset belongs to (itself included if it is one), in list order."""
        members = self.paths(synset_id)
        return [c for c in self.categories if c.synset_id in members]

    def most_specific(self, synset_id: str, exclude: Iterable[str] = ()) -> list[Category]:
        """The categories of ``synset_id`` that are below none of its other categories (the
        synset itself is never its own answer; ``exclude`` names categories to ignore)."""
        skip = set(exclude)
        cats = [c for c in self.categories_of(synset_id)
                if c.synset_id != synset_id and c.name not in skip]
        ids = {c.synset_id for c in cats}
        return [c for c in cats
                if not any(c.synset_id in self._cat_ancestors[o] for o in ids)]

    def common(self, a: str, b: str, exclude: Iterable[str] = ()) -> list[Category]:
        """The most specific categories that both synsets belong to."""
        skip = set(exclude)
        shared = [c for c in self.categories_of(a)
                  if c.synset_id in self.paths(b) and c.name not in skip
                  and c.synset_id not in (a, b)]
        ids = {c.synset_id for c in shared}
        return [c for c in shared
                if not any(c.synset_id in self._cat_ancestors[o] for o in ids)]

    def ancestors(self, synset_id: str) -> set[str]:
        """Every synset reached from ``synset_id`` by taxonomy triples (itself excluded)."""
        kg = self.kg
        start = kg.index_of(synset_id)
        seen = {start}
        frontier = [start]
        while frontier:
            nxt = []
            for node in frontier:
                targets, rels = kg.out_edges(node)
                for target, rel in zip(targets.tolist(), rels.tolist(), strict=True):
                    if rel in self._rels and target not in seen:
                        seen.add(target)
                        nxt.append(target)
            frontier = nxt
        seen.discard(start)
        return set(kg.ids_of(sorted(seen)))

    def is_ancestor(self, upper: str, lower: str) -> bool:
        """True when a taxonomy path leads from ``lower`` up to ``upper`` (``upper`` need not
        be a category)."""
        if upper == lower:
            return True
        kg = self.kg
        goal = kg.index_of(upper)
        seen = {kg.index_of(lower)}
        frontier = list(seen)
        while frontier:
            nxt = []
            for node in frontier:
                targets, rels = kg.out_edges(node)
                for target, rel in zip(targets.tolist(), rels.tolist(), strict=True):
                    if rel in self._rels and target not in seen:
                        if target == goal:
                            return True
                        seen.add(target)
                        nxt.append(target)
            frontier = nxt
        return False


def filter_links(kg: CompiledKG, links: Iterable[EmojiLink],
                 categories: Sequence[Category] = CATEGORIES) -> list[EmojiLink]:
    """Keep the links usable as benchmark objects: the synset belongs to at least one
    category and is not itself a category synset (a "bird" object would make "how many
    birds?" and "what kind of thing is the bird?" ill-posed)."""
    taxonomy = Taxonomy(kg, categories)
    return [link for link in links
            if link.synset_id not in taxonomy.by_synset and taxonomy.categories_of(link.synset_id)]
