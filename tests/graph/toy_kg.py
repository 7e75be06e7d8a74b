"""A small, hand-written knowledge graph used across the graph-layer tests."""

from __future__ import annotations

from kgmm.graph.model import Entity, GraphData, Relation, Triple

RELATIONS = [
    Relation("hypernym", "is a kind of", "hyponym"),
    Relation("hyponym", "has the kind", "hypernym"),
    Relation("part_meronym", "has the part", "part_holonym"),
    Relation("part_holonym", "is a part of", "part_meronym"),
    Relation("antonym", "is the opposite of", "antonym"),
]

_ENTITIES = [
    ("entity", "entity", (), "that which exists", "noun.Tops"),
    ("organism", "organism", ("being",), "a living thing", "noun.Tops"),
    ("animal", "animal", ("beast", "creature"), "a living organism that moves", "noun.Tops"),
    ("canine", "canine", ("canid",), "fissiped mammals with nonretractile claws", "noun.animal"),
    ("dog", "dog", ("domestic dog", "Canis familiaris"), "a member of the genus Canis",
     "noun.animal"),
    ("puppy", "puppy", (), "a young dog", "noun.animal"),
    ("cat", "cat", ("true cat",), "feline mammal usually having thick soft fur", "noun.animal"),
    ("fruit", "fruit", (), "the ripened reproductive body of a seed plant", "noun.plant"),
    ("apple", "apple", (), "fruit with red or yellow or green skin", "noun.food"),
    ("banana", "banana", (), "elongated crescent-shaped yellow fruit", "noun.food"),
    ("vehicle", "vehicle", (), "a conveyance that transports people or objects", "noun.artifact"),
    ("car", "car", ("auto", "automobile"), "a motor vehicle with four wheels", "noun.artifact"),
    ("wheel", "wheel", (), "a simple machine consisting of a circular frame", "noun.artifact"),
    ("hot", "hot", (), "used of physical heat", "adj.all"),
    ("cold", "cold", (), "having a low temperature", "adj.all"),
    ("bank_river", "bank", (), "sloping land beside a body of water", "noun.object"),
    ("bank_money", "bank", ("depository financial institution",),
     "a financial institution", "noun.group"),
]

_HYPERNYMS = [
    ("organism", "entity"), ("animal", "organism"), ("canine", "animal"), ("dog", "canine"),
    ("puppy", "dog"), ("cat", "animal"), ("fruit", "entity"), ("apple", "fruit"),
    ("banana", "fruit"), ("vehicle", "entity"), ("car", "vehicle"), ("wheel", "entity"),
    ("bank_river", "entity"), ("bank_money", "entity"),
]


def toy_graph(prefix: str = "ex:") -> GraphData:
    """17 entities, 5 relations, 34 triples (hypernyms with their inverse hyponyms, parts)."""
    entities = [
        Entity(prefix + key, label, aliases, desc, (lex,),
               {"rank": i, "weight": 0.5 + i, "common": i % 2 == 0} if i < 4 else {})
        for i, (key, label, aliases, desc, lex) in enumerate(_ENTITIES)
    ]
    triples = []
    for child, parent in _HYPERNYMS:
        triples.append(Triple(prefix + child, "hypernym", prefix + parent))
        triples.append(Triple(prefix + parent, "hyponym", prefix + child))
    triples += [
        Triple(prefix + "car", "part_meronym", prefix + "wheel"),
        Triple(prefix + "wheel", "part_holonym", prefix + "car"),
        Triple(prefix + "hot", "antonym", prefix + "cold"),
        Triple(prefix + "cold", "antonym", prefix + "hot"),
        Triple(prefix + "dog", "antonym", prefix + "cat"),
        Triple(prefix + "cat", "antonym", prefix + "dog"),
    ]
    return GraphData(entities, list(RELATIONS), triples, source="toy")
