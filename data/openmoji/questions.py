"""Questions about a scene: ten families, several phrasings each, with the program that
answers them and the KG triples that support the answer.

====  =====================  ============================================================
 #     family                 what it asks (answer type)
====  =====================  ============================================================
 1     ``identify``           what is at a position: the far left/right, top/bottom, or the
                              only object (object name)
 2     ``count``              how many X (number)
 3     ``spatial``            what is left of / above / next to the X (object name), or is
                              the X left of the Y (yes/no)
 4     ``category``           what kind of thing the X (or the object at a position) is: its
                              most specific category (category name)
 5     ``select_by_category`` which object is a kind of C (object name)
 6     ``count_by_category``  how many Cs (number)
 7     ``exists_by_category`` is there a C (yes/no)
 8     ``part_whole``         a part of the X (``part_meronym``, also inherited through one
                              ``hypernym``), or what the X is a part of (``part_holonym``)
                              — several valid answers (part or whole name)
 9     ``common_category``    the most specific category the X and the Y share (category
                              name)
 10    ``two_hop``            the category or a part of the object in a spatial relation to
                              the X (category or part name)
====  =====================  ============================================================

Families 1–3 need the picture only; 4–10 also need the KG: the category or part of an
object is not in the picture. Objects are named by their lemma (:mod:`.linking`), categories
by :class:`~.categories.Category` names; both lower-cased.

Every question carries ``answers`` — ten, as VQA does: one answer ten times, or up to three
valid answers shared 4/3/3 (several most specific categories, parts), normalised as the
official evaluation normalises predictions (``yo-yo`` → ``yo yo``) —, ``valid_answers``
(all of them), ``answer_entity_ids`` (their synsets; none for numbers and yes/no), the
``program`` (steps over the scene graph and the KG) and ``supporting_facts`` (KG triples
``[subject, relation, object]``: for a category, the ``hypernym``/``instance_hypernym`` path
from the object up to it; for a part, the ``part_meronym`` triple, after a ``hypernym`` triple
when inherited).

Splits constrain the questions (:class:`QuestionPolicy`): held-out category names never
occur in i.i.d. splits; ``test-novel-answers`` asks only questions whose answer or text holds
a held-out category; ``test-novel-objects`` only questions about a novel object.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kgmm.graph.compiled import CompiledKG

from ..vqa_eval import normalize_answer
from .categories import Category, Taxonomy

__all__ = [
    "FAMILIES",
    "MASS_NOUNS",
    "TEMPLATES",
    "ObjectFacts",
    "Question",
    "QuestionGenerator",
    "QuestionPolicy",
    "build_object_facts",
    "plural",
    "spread_answers",
]

#: The families, numbered 1–10 in this order.
FAMILIES: tuple[str, ...] = (
    "identify", "count", "spatial", "category", "select_by_category", "count_by_category",
    "exists_by_category", "part_whole", "common_category", "two_hop",
)
_MARGIN = 0.05  # an extreme object is this share of the canvas beyond the next one
_FAR = 0.25  # "not next to" needs at least this gap, as a share of the canvas
_MAX_LISTED = 3
_REL_PHRASE = {"left_of": "to the left of", "right_of": "to the right of", "above": "above",
               "below": "below", "next_to": "next to"}
_CONVERSE = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}
_EXTREME_PHRASE = {"left": "leftmost object", "right": "rightmost object",
                   "top": "topmost object", "bottom": "bottommost object"}

#: Phrasings per family (and sub-kind); ``{x}``, ``{y}`` are object references, ``{c}`` a
#: category name, ``{cs}`` its plural, ``{ac}`` it with its article, ``{r}`` a relation phrase.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "identify/only": ("What is in the picture?", "What object is shown in the image?",
                      "What can you see in this image?"),
    "identify/left": ("What is the leftmost object?", "Which object is furthest to the left?",
                      "What is on the far left of the picture?"),
    "identify/right": ("What is the rightmost object?",
                       "Which object is furthest to the right?",
                       "What is on the far right of the picture?"),
    "identify/top": ("What is the topmost object?", "Which object is closest to the top?",
                     "What is at the very top of the image?"),
    "identify/bottom": ("What is the bottommost object?",
                        "Which object is closest to the bottom?",
                        "What is at the very bottom of the image?"),
    "count": ("How many {xs} are there?", "How many {xs} can you see?",
              "What is the number of {xs} in the picture?", "How many {xs} are in the image?"),
    "spatial/what": ("What is {r} the {x}?", "Which object is {r} the {x}?",
                     "What object can be seen {r} the {x}?"),
    "spatial/yesno": ("Is the {x} {r} the {y}?", "Is the {x} placed {r} the {y}?",
                      "Does the {x} appear {r} the {y}?"),
    "category": ("What kind of thing is the {x}?", "What type of thing is the {x}?",
                 "The {x} is a kind of what?", "What category does the {x} belong to?"),
    "select_by_category": ("Which object is a kind of {c}?", "Which of the objects is {ac}?",
                           "What in the picture is {ac}?", "Which thing here is a kind of {c}?"),
    "count_by_category": ("How many {cs} are there?", "How many of the objects are {cs}?",
                          "How many {cs} can you see?", "What is the number of {cs} here?"),
    "exists_by_category": ("Is there {ac} in the picture?", "Does the image contain {ac}?",
                           "Can you see {ac} here?", "Is any of the objects a kind of {c}?"),
    "part_whole/part": ("Name a part of the {x}.", "What is one part of the {x}?",
                        "What does the {x} have as a part?"),
    "part_whole/whole": ("What is the {x} a part of?", "The {x} is part of what?",
                         "What whole is the {x} a part of?"),
    "common_category": ("What kind of thing are both the {x} and the {y}?",
                        "What category do the {x} and the {y} have in common?",
                        "The {x} and the {y} are both kinds of what?"),
    "two_hop/category": ("What kind of thing is the object {r} the {x}?",
                         "The object {r} the {x} is a kind of what?",
                         "What type of thing is the object {r} the {x}?"),
    "two_hop/part": ("Name a part of the object {r} the {x}.",
                     "What is one part of the object {r} the {x}?",
                     "What does the object {r} the {x} have as a part?"),
}

#: Object names that are mass nouns: "some butter", "how many butter" is not asked as
#: "how many butters".
MASS_NOUNS: frozenset[str] = frozenset({
    "meat", "spaghetti", "sushi", "custard", "bacon", "falafel", "butter", "luggage", "coral",
    "fondue", "clover", "popcorn", "rice", "salt", "soap", "thread", "ice cream",
})
_INVARIANT_PLURALS = {
    "sheep", "deer", "fish", "bison", "moose", "french fries", "briefs", "shorts", "goggles",
    "scissors", "sunglasses", "baked goods", "spectacles", "pliers", "aircraft", "swine",
    *MASS_NOUNS,
}
_IRREGULAR_PLURALS = {
    "mouse": "mice", "goose": "geese", "ox": "oxen", "foot": "feet", "tooth": "teeth",
    "knife": "knives", "leaf": "leaves", "wolf": "wolves", "loaf": "loaves", "man": "men",
    "woman": "women", "child": "children", "calf": "calves", "die": "dice",
}


def plural(name: str) -> str:
    """English plural of a lower-case noun phrase (``glass of milk`` → ``glasses of milk``)."""
    head, sep, tail = name.partition(" of ")
    if sep:
        return plural(head) + sep + tail
    if name in _INVARIANT_PLURALS:
        return name
    first, _, last = name.rpartition(" ")
    prefix = first + " " if first else ""
    if last in _INVARIANT_PLURALS:
        return name
    if last in _IRREGULAR_PLURALS:
        return prefix + _IRREGULAR_PLURALS[last]
    if last.endswith(("s", "x", "z", "ch", "sh")):
        return name + "es"
    if last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        return name[:-1] + "ies"
    if last.endswith(("to", "go")) and last not in ("piano", "photo", "avocado"):
        return name + "es"
    return name + "s"


def spread_answers(answers: Sequence[str], total: int = 10) -> list[str]:
    """Fill ``total`` answer slots: one answer everywhere, or up to :data:`_MAX_LISTED`
    answers round-robin (4/3/3), so each listed answer scores ≥ 0.9 under VQA accuracy."""
    listed = list(answers[:_MAX_LISTED])
    return [listed[k % len(listed)] for k in range(total)]


Triple = list[str]


@dataclass
class ObjectFacts:
    """What the KG says about one object synset, precomputed for question generation.

    Attributes:
        name: the object's lower-case lemma.
        categories: category name → supporting triples from the object up to it.
        most_specific: the object's most specific categories (names).
        parts: ``(part synset, name, supporting triples)``; direct ``part_meronym`` first,
            then those inherited through one ``hypernym``.
        wholes: ``(whole synset, name, supporting triples)`` from ``part_holonym``.
    """

    synset_id: str
    name: str
    categories: dict[str, list[Triple]]
    most_specific: list[str]
    parts: list[tuple[str, str, list[Triple]]]
    wholes: list[tuple[str, str, list[Triple]]]


def build_object_facts(kg: CompiledKG, taxonomy: Taxonomy,
                       objects: Iterable[tuple[str, str]]) -> dict[str, ObjectFacts]:
    """:class:`ObjectFacts` for ``(synset id, name)`` pairs."""
    part_rel = kg.relation_index("part_meronym")
    whole_rel = kg.relation_index("part_holonym")
    hyper_rel = kg.relation_index("hypernym")

    def targets(index: int, rel: int) -> list[int]:
        dst, rels = kg.out_edges(index)
        return [int(d) for d, r in zip(dst.tolist(), rels.tolist(), strict=True) if r == rel]

    out: dict[str, ObjectFacts] = {}
    for synset, name in objects:
        index = kg.index_of(synset)
        cats = {c.name: [list(t) for t in taxonomy.triples(taxonomy.path(synset, c))]
                for c in taxonomy.categories_of(synset) if c.synset_id != synset}
        parts: list[tuple[str, str, list[Triple]]] = []
        seen = {name}
        for p in targets(index, part_rel):
            label = kg.label(p).lower()
            if label not in seen:
                seen.add(label)
                parts.append((kg.id_of(p), label, [[synset, "part_meronym", kg.id_of(p)]]))
        for h in targets(index, hyper_rel):
            for p in targets(h, part_rel):
                label = kg.label(p).lower()
                if label not in seen:
                    seen.add(label)
                    parts.append((kg.id_of(p), label, [[synset, "hypernym", kg.id_of(h)],
                                                       [kg.id_of(h), "part_meronym",
                                                        kg.id_of(p)]]))
        wholes: list[tuple[str, str, list[Triple]]] = []
        seen = {name}
        for w in targets(index, whole_rel):
            label = kg.label(w).lower()
            if label not in seen:
                seen.add(label)
                wholes.append((kg.id_of(w), label, [[synset, "part_holonym", kg.id_of(w)]]))
        most = [c.name for c in taxonomy.most_specific(synset)]
        out[synset] = ObjectFacts(synset, name, cats, most, parts, wholes)
    return out


@dataclass(frozen=True)
class QuestionPolicy:
    """What a split allows.

    Attributes:
        held_out: category names that must not occur (i.i.d. splits).
        require_held_out: category names of which one must occur (``test-novel-answers``).
        require_objects: synset ids of which one must be involved (``test-novel-objects``).
        absent_pool: names and synsets of objects a "how many" question may ask about when
            none is in the scene.
    """

    held_out: frozenset[str] = frozenset()
    require_held_out: frozenset[str] = frozenset()
    require_objects: frozenset[str] = frozenset()
    absent_pool: tuple[tuple[str, str], ...] = ()

    def allows(self, question: Question) -> bool:
        """Whether the split may ask ``question``: no held-out category name in its text,
        answers or categories; one required name among them; one required object in it."""
        if any(_contains(question, name) for name in self.held_out):
            return False
        if self.require_held_out and not any(_contains(question, name)
                                             for name in self.require_held_out):
            return False
        return not self.require_objects or bool(set(question.objects) & self.require_objects)


def _contains(question: Question, name: str) -> bool:
    """``name`` occurs in the question text, an answer or a category, starting at a word
    (so its plural counts too)."""
    padded = f" {name}"
    return any(padded in _padded(t) for t in (question.question, *question.valid_answers,
                                              *question.categories))


@lru_cache(maxsize=65536)
def _padded(text: str) -> str:
    words = text.lower().replace("?", " ").replace(".", " ").replace(",", " ").split()
    return " " + " ".join(words) + " "


_normalize = lru_cache(maxsize=65536)(normalize_answer)


@dataclass
class Question:
    """One generated question (what :mod:`.build` turns into a VQA record)."""

    family: str
    question: str
    answers: list[str]
    valid_answers: list[str]
    answer_type: str
    answer_entity_ids: list[str]
    program: list[dict[str, Any]]
    supporting_facts: list[Triple]
    categories: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)


class QuestionGenerator:
    """Generate questions about scenes (scene dicts from :func:`.scenes.sample_scene`).

    Args:
        facts: :class:`ObjectFacts` of every object synset.
        categories: the category list (names, plurals, articles).
        category_ancestors: category name → names of the categories above it.
        shares: family → target share of the questions (normalised; 0 or absent: never).
        policy: the split's constraints.
        per_scene: questions asked of each scene (fewer when a scene allows fewer).
        conflicts: sorted pairs of synsets where one is a kind of the other: "how many X"
            is not asked of an absent X when a kind of X (or X's kind) is in the scene.
    """

    def __init__(self, facts: Mapping[str, ObjectFacts], categories: Sequence[Category],
                 category_ancestors: Mapping[str, set[str]], shares: Mapping[str, float],
                 policy: QuestionPolicy, per_scene: int = 5,
                 conflicts: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.facts = facts
        self.conflicts = conflicts
        self.categories = {c.name: c for c in categories}
        self.category_ancestors = category_ancestors
        total = sum(v for v in shares.values() if v > 0)
        self.shares = {f: shares.get(f, 0.0) / total for f in FAMILIES if shares.get(f, 0) > 0}
        self.policy = policy
        self.per_scene = per_scene
        self.counts: Counter[str] = Counter()
        self._makers: dict[str, Callable[[_View, random.Random], Question | None]] = {
            "identify": self._identify, "count": self._count, "spatial": self._spatial,
            "category": self._category, "select_by_category": self._select,
            "count_by_category": self._count_category, "exists_by_category": self._exists,
            "part_whole": self._part_whole, "common_category": self._common,
            "two_hop": self._two_hop,
        }

    # -- driving -----------------------------------------------------------------------
    def generate(self, scene: Mapping[str, Any], rng: random.Random) -> list[Question]:
        """Questions for one scene; families are chosen to keep every family near its
        share of all questions generated so far (the most behind first)."""
        view = _View(scene, self.facts)
        out: list[Question] = []
        texts: set[str] = set()
        tried_out: set[str] = set()
        while len(out) < self.per_scene:
            total = sum(self.counts.values()) + 1
            order = sorted(
                (f for f in self.shares if f not in tried_out),
                key=lambda f: (-(self.shares[f] * total - self.counts[f]), FAMILIES.index(f)))
            made = None
            for family in order:
                for _ in range(3):
                    q = self._makers[family](view, rng)
                    if q is not None and q.question not in texts and self.policy.allows(q):
                        made = q
                        break
                if made is not None:
                    break
                tried_out.add(family)
            if made is None:
                break
            texts.add(made.question)
            # answers as the official VQA evaluation normalises them ("yo-yo" → "yo yo")
            made.answers = [_normalize(a) for a in made.answers]
            made.valid_answers = [_normalize(a) for a in made.valid_answers]
            self.counts[made.family] += 1
            out.append(made)
        return out

    # -- helpers -----------------------------------------------------------------------
    def _cat(self, name: str) -> Category:
        return self.categories[name]

    def _most_specific_common(self, a: str, b: str) -> list[str]:
        shared = set(self.facts[a].categories) & set(self.facts[b].categories)
        return sorted((c for c in shared
                       if not any(c in self.category_ancestors[o] for o in shared)),
                      key=list(self.categories).index)

    @staticmethod
    def _pick(rng: random.Random, items: Sequence[Any]) -> Any:
        return items[rng.randrange(len(items))]

    def _template(self, rng: random.Random, key: str, **values: str) -> str:
        return self._pick(rng, TEMPLATES[key]).format(**values)

    def _category_question(self, family: str, text: str, facts: ObjectFacts,
                           answers: list[str], program: list[dict[str, Any]],
                           objects: list[str], extra_categories: Iterable[str] = ()
                           ) -> Question:
        support = [t for a in answers for t in facts.categories[a]]
        return Question(
            family, text, spread_answers(answers), answers, "other",
            [self._cat(a).synset_id for a in answers], program, _dedupe(support),
            categories=[*answers, *extra_categories], objects=objects)

    # -- families ----------------------------------------------------------------------
    def _identify(self, view: _View, rng: random.Random) -> Question | None:
        if not view.objects:
            return None
        if len(view.objects) == 1:
            k, key = 0, "identify/only"
            program: list[dict[str, Any]] = [{"op": "only_object", "object": 0}]
        else:
            direction = self._pick(rng, ("left", "right", "top", "bottom"))
            found = view.extreme(direction)
            if found is None:
                return None
            k, key = found, f"identify/{direction}"
            program = [{"op": "extreme", "direction": direction, "object": k}]
        obj = view.objects[k]
        program.append({"op": "name", "synset": obj["synset_id"]})
        return Question("identify", self._template(rng, key), spread_answers([obj["name"]]),
                        [obj["name"]], "other", [obj["synset_id"]], program, [],
                        objects=[obj["synset_id"]])

    def _count(self, view: _View, rng: random.Random) -> Question | None:
        types = view.types()
        if types and (rng.random() < 0.8 or not self.policy.absent_pool):
            repeated = [t for t in types if view.count(t) > 1]
            synset = self._pick(rng, repeated if repeated and rng.random() < 0.5 else types)
            name = self.facts[synset].name
        elif self.policy.absent_pool:
            name, synset = self._pick(rng, self.policy.absent_pool)
            if synset in types or any(tuple(sorted((synset, t))) in self.conflicts
                                      for t in types):
                return None
        else:
            return None
        count = view.count(synset)
        text = self._template(rng, "count", xs=plural(name))
        program = [{"op": "filter_synset", "synset": synset, "objects": view.instances(synset)},
                   {"op": "count", "result": count}]
        return Question("count", text, spread_answers([str(count)]), [str(count)], "number",
                        [], program, [], objects=[synset])

    def _spatial(self, view: _View, rng: random.Random) -> Question | None:
        singles = view.single_instance()
        if not singles:
            return None
        x = self._pick(rng, singles)
        if rng.random() < 0.5:
            relation = self._pick(rng, tuple(_REL_PHRASE))
            found = view.related_type(relation, x)
            if found is None:
                return None
            answer = view.objects[found]
            text = self._template(rng, "spatial/what", r=_REL_PHRASE[relation],
                                  x=view.objects[x]["name"])
            program = [{"op": "find", "synset": view.objects[x]["synset_id"], "object": x},
                       {"op": "relate", "relation": relation, "objects": view.related(
                           relation, x)},
                       {"op": "name", "synset": answer["synset_id"]}]
            return Question("spatial", text, spread_answers([answer["name"]]),
                            [answer["name"]], "other", [answer["synset_id"]], program, [],
                            objects=[view.objects[x]["synset_id"], answer["synset_id"]])
        others = [y for y in singles if y != x]
        if not others:
            return None
        y = self._pick(rng, others)
        want_yes = rng.random() < 0.5
        holding = view.relations_between(x, y)
        if want_yes:
            if not holding:
                return None
            relation = self._pick(rng, sorted(holding))
        else:
            options = [_CONVERSE[r] for r in sorted(holding) if r in _CONVERSE]
            if "next_to" not in holding and view.gap(x, y) >= _FAR * view.size:
                options.append("next_to")
            if not options:
                return None
            relation = self._pick(rng, options)
        answer = "yes" if relation in holding else "no"
        text = self._template(rng, "spatial/yesno", r=_REL_PHRASE[relation],
                              x=view.objects[x]["name"], y=view.objects[y]["name"])
        program = [{"op": "find", "synset": view.objects[x]["synset_id"], "object": x},
                   {"op": "find", "synset": view.objects[y]["synset_id"], "object": y},
                   {"op": "holds", "relation": relation, "result": answer}]
        return Question("spatial", text, spread_answers([answer]), [answer], "yes/no", [],
                        program, [], objects=[view.objects[x]["synset_id"],
                                              view.objects[y]["synset_id"]])

    @staticmethod
    def _references(view: _View) -> list[tuple[int, str, dict[str, Any]]]:
        """Every way to point at one object: ``the X`` (a single instance) or a position."""
        refs = [(k, view.objects[k]["name"],
                 {"op": "find", "synset": view.objects[k]["synset_id"], "object": k})
                for k in view.single_instance()]
        if len(view.objects) > 1:
            for direction in ("left", "right", "top", "bottom"):
                k = view.extreme(direction)
                if k is not None:
                    refs.append((k, _EXTREME_PHRASE[direction],
                                 {"op": "extreme", "direction": direction, "object": k,
                                  "synset": view.objects[k]["synset_id"]}))
        return refs

    def _reference(self, view: _View, rng: random.Random
                   ) -> tuple[int, str, dict[str, Any]] | None:
        """An object and how to name it: ``the X`` (a single instance) or a position."""
        refs = self._references(view)
        return self._pick(rng, refs) if refs else None

    def _category(self, view: _View, rng: random.Random) -> Question | None:
        ref = self._reference(view, rng)
        if ref is None:
            return None
        k, phrase, step = ref
        facts = self.facts[view.objects[k]["synset_id"]]
        if not facts.most_specific:
            return None
        text = self._template(rng, "category", x=phrase)
        program = [step, {"op": "most_specific_category", "synset": facts.synset_id,
                          "result": facts.most_specific}]
        return self._category_question("category", text, facts, list(facts.most_specific),
                                       program, [facts.synset_id])

    def _select(self, view: _View, rng: random.Random) -> Question | None:
        members: dict[str, list[str]] = {}
        for synset in view.types():
            for c in self.facts[synset].categories:
                members.setdefault(c, []).append(synset)
        unique = self._focus(sorted(c for c, m in members.items() if len(m) == 1))
        if not unique:
            return None
        c = self._pick(rng, unique)
        synset = members[c][0]
        facts = self.facts[synset]
        cat = self._cat(c)
        text = self._template(rng, "select_by_category", c=c, ac=cat.with_article)
        program = [{"op": "filter_category", "category": cat.synset_id,
                    "objects": view.instances(synset)},
                   {"op": "name", "synset": synset}]
        return Question("select_by_category", text, spread_answers([facts.name]), [facts.name],
                        "other", [synset], program, _dedupe(facts.categories[c]),
                        categories=[c], objects=view.types())

    def _focus(self, categories: Iterable[str]) -> list[str]:
        """The categories a split may ask about (only held-out ones in test-novel-answers)."""
        wanted = self.policy.require_held_out
        return [c for c in categories if not wanted or c in wanted]

    def _category_choice(self, view: _View, rng: random.Random, present_share: float,
                         several: bool = False) -> str | None:
        """A category of some object in the scene (with probability ``present_share``; with
        ``several``, one holding two or more objects half of the time when there is one),
        else one of none of them."""
        counts: Counter[str] = Counter()
        for s in view.types():
            for c in self.facts[s].categories:
                counts[c] += view.count(s)
        present = self._focus(sorted(counts))
        absent = self._focus(c for c in self.categories if c not in counts)
        if present and (rng.random() < present_share or not absent):
            many = [c for c in present if counts[c] > 1]
            if several and many and rng.random() < 0.5:
                return self._pick(rng, many)
            return self._pick(rng, present)
        return self._pick(rng, absent) if absent else None

    def _count_category(self, view: _View, rng: random.Random) -> Question | None:
        c = self._category_choice(view, rng, 0.8, several=True)
        if c is None:
            return None
        cat = self._cat(c)
        members = [s for s in view.types() if c in self.facts[s].categories]
        count = sum(view.count(s) for s in members)
        text = self._template(rng, "count_by_category", cs=cat.plural)
        support = [t for s in members for t in self.facts[s].categories[c]]
        program = [{"op": "filter_category", "category": cat.synset_id,
                    "objects": sorted(k for s in members for k in view.instances(s))},
                   {"op": "count", "result": count}]
        return Question("count_by_category", text, spread_answers([str(count)]), [str(count)],
                        "number", [], program, _dedupe(support), categories=[c],
                        objects=view.types())

    def _exists(self, view: _View, rng: random.Random) -> Question | None:
        c = self._category_choice(view, rng, 0.5)
        if c is None:
            return None
        cat = self._cat(c)
        members = [s for s in view.types() if c in self.facts[s].categories]
        answer = "yes" if members else "no"
        text = self._template(rng, "exists_by_category", c=c, ac=cat.with_article)
        support = self.facts[members[0]].categories[c] if members else []
        program = [{"op": "filter_category", "category": cat.synset_id,
                    "objects": sorted(k for s in members for k in view.instances(s))},
                   {"op": "exists", "result": answer}]
        return Question("exists_by_category", text, spread_answers([answer]), [answer],
                        "yes/no", [], program, _dedupe(support), categories=[c],
                        objects=view.types())

    def _part_whole(self, view: _View, rng: random.Random) -> Question | None:
        ref = self._reference(view, rng)
        if ref is None:
            return None
        k, phrase, step = ref
        facts = self.facts[view.objects[k]["synset_id"]]
        if facts.parts and (not facts.wholes or rng.random() < 0.7):
            kind, items, relation = "part", facts.parts, "part_meronym"
        elif facts.wholes:
            kind, items, relation = "whole", facts.wholes, "part_holonym"
        else:
            return None
        text = self._template(rng, f"part_whole/{kind}", x=phrase)
        return self._parts_question("part_whole", text, items, relation, [step], facts)

    def _parts_question(self, family: str, text: str, items: list[tuple[str, str, list]],
                        relation: str, steps: list[dict[str, Any]], facts: ObjectFacts,
                        ) -> Question:
        names = [name for _, name, _ in items]
        support = [t for _, _, triples in items for t in triples]
        program = [*steps, {"op": relation, "synset": facts.synset_id, "result": names}]
        return Question(family, text, spread_answers(names), names, "other",
                        [synset for synset, _, _ in items], program, _dedupe(support),
                        objects=[facts.synset_id])

    def _common(self, view: _View, rng: random.Random) -> Question | None:
        refs = self._references(view)
        pairs = [(first, second) for first in refs for second in refs
                 if view.objects[first[0]]["synset_id"] != view.objects[second[0]]["synset_id"]
                 and self._most_specific_common(view.objects[first[0]]["synset_id"],
                                                view.objects[second[0]]["synset_id"])]
        if not pairs:
            return None
        (x, phrase_x, step_x), (y, phrase_y, step_y) = self._pick(rng, pairs)
        a, b = view.objects[x]["synset_id"], view.objects[y]["synset_id"]
        common = self._most_specific_common(a, b)
        text = self._template(rng, "common_category", x=phrase_x, y=phrase_y)
        support = [t for c in common for s in (a, b) for t in self.facts[s].categories[c]]
        program = [step_x, step_y, {"op": "common_category", "synsets": [a, b],
                                    "result": common}]
        return Question("common_category", text, spread_answers(common), common, "other",
                        [self._cat(c).synset_id for c in common], program, _dedupe(support),
                        categories=common, objects=[a, b])

    def _two_hop(self, view: _View, rng: random.Random) -> Question | None:
        singles = view.single_instance()
        if not singles:
            return None
        x = self._pick(rng, singles)
        relation = self._pick(rng, tuple(_REL_PHRASE))
        related = view.related(relation, x)
        if len(related) != 1:
            return None
        target = related[0]
        facts = self.facts[view.objects[target]["synset_id"]]
        steps = [{"op": "find", "synset": view.objects[x]["synset_id"], "object": x},
                 {"op": "relate", "relation": relation, "objects": related}]
        objects = [view.objects[x]["synset_id"], facts.synset_id]
        phrase = {"r": _REL_PHRASE[relation], "x": view.objects[x]["name"]}
        if facts.parts and rng.random() < 0.4:
            text = self._template(rng, "two_hop/part", **phrase)
            q = self._parts_question("two_hop", text, facts.parts, "part_meronym", steps, facts)
            q.objects = objects
            return q
        if not facts.most_specific:
            return None
        text = self._template(rng, "two_hop/category", **phrase)
        program = [*steps, {"op": "most_specific_category", "synset": facts.synset_id,
                            "result": facts.most_specific}]
        return self._category_question("two_hop", text, facts, list(facts.most_specific),
                                       program, objects)


def _dedupe(triples: Iterable[Triple]) -> list[Triple]:
    out: list[Triple] = []
    seen: set[tuple[str, ...]] = set()
    for t in triples:
        key = tuple(t)
        if key not in seen:
            seen.add(key)
            out.append(list(t))
    return out


class _View:
    """Read-only helpers over one scene dict."""

    def __init__(self, scene: Mapping[str, Any], facts: Mapping[str, ObjectFacts]) -> None:
        self.objects = scene["objects"]
        self.size = int(scene["width"])
        self.facts = facts
        self.rel: dict[tuple[int, int], set[str]] = {}
        for a, relation, b in scene["relations"]:
            self.rel.setdefault((a, b), set()).add(relation)
        self._by_type: dict[str, list[int]] = {}
        for k, obj in enumerate(self.objects):
            self._by_type.setdefault(obj["synset_id"], []).append(k)

    def types(self) -> list[str]:
        return list(self._by_type)

    def instances(self, synset: str) -> list[int]:
        return list(self._by_type.get(synset, ()))

    def count(self, synset: str) -> int:
        return len(self._by_type.get(synset, ()))

    def single_instance(self) -> list[int]:
        return [ks[0] for ks in self._by_type.values() if len(ks) == 1]

    def relations_between(self, a: int, b: int) -> set[str]:
        return self.rel.get((a, b), set())

    def related(self, relation: str, x: int) -> list[int]:
        """Objects ``k`` with ``[k, relation, x]``."""
        return [k for k in range(len(self.objects))
                if k != x and relation in self.rel.get((k, x), ())]

    def related_type(self, relation: str, x: int) -> int | None:
        """The one object type in ``relation`` to ``x`` (an instance of it), or None."""
        found = self.related(relation, x)
        kinds = {self.objects[k]["synset_id"] for k in found}
        if len(kinds) != 1:
            return None
        return found[0]

    def gap(self, a: int, b: int) -> int:
        from .scenes import box_gap

        return box_gap(self.objects[a]["box"], self.objects[b]["box"])

    def extreme(self, direction: str) -> int | None:
        """The object whose box centre is beyond every other's by a margin, or None."""
        axis, sign = {"left": (0, 1), "right": (0, -1), "top": (1, 1), "bottom": (1, -1)}[
            direction]
        centres = [sign * (o["box"][axis] + o["box"][axis + 2]) / 2 for o in self.objects]
        order = sorted(range(len(centres)), key=centres.__getitem__)
        if len(order) < 2:
            return None
        if centres[order[1]] - centres[order[0]] < _MARGIN * self.size:
            return None
        return order[0]
