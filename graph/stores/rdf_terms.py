"""The RDF vocabulary kgmm writes into the embedded store, and N-Triples encoding helpers.

An entity ``wn:dog.n.01`` becomes the IRI ``https://kgmm.dev/entity/wn:dog.n.01`` with
``rdf:type kgmm:Entity``, ``rdfs:label``, ``skos:altLabel`` (one per alias) and
``kgmm:entityRecord``: the exact, ordered record (description, types, properties included) as
canonical JSON, from which kgmm reads the entity back. A relation ``hypernym`` is the predicate
``https://kgmm.dev/relation/hypernym``, itself described by ``rdf:type kgmm:Relation``,
``rdfs:label``, ``kgmm:inverse`` and ``kgmm:relationRecord``. The store keeps this lean form to
load fast; ``kgmm kg export`` writes the full vocabulary (descriptions, types, properties as
triples) for other tools.
"""

from __future__ import annotations

import re
from json.encoder import encode_basestring
from urllib.parse import quote, unquote

KGMM_NS = "https://kgmm.dev/ns#"
ENTITY_NS = "https://kgmm.dev/entity/"
RELATION_NS = "https://kgmm.dev/relation/"

RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
RDFS_LABEL = "http://www.w3.org/2000/01/rdf-schema#label"
SKOS_ALT_LABEL = "http://www.w3.org/2004/02/skos/core#altLabel"
KGMM_ENTITY = KGMM_NS + "Entity"
KGMM_RELATION = KGMM_NS + "Relation"
KGMM_INVERSE = KGMM_NS + "inverse"
KGMM_ENTITY_RECORD = KGMM_NS + "entityRecord"
KGMM_RELATION_RECORD = KGMM_NS + "relationRecord"

_IRI_SAFE = ":/._-~!$&'()*+,;=@"
_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9:/._\-~!$&'()*+,;=@]")


def entity_iri(entity_id: str) -> str:
    """The IRI of an entity id (characters not allowed in IRIs are percent-encoded)."""
    if _NEEDS_QUOTING.search(entity_id) is None:
        return ENTITY_NS + entity_id
    return ENTITY_NS + quote(entity_id, safe=_IRI_SAFE)


def entity_id_from_iri(iri: str) -> str:
    """Inverse of :func:`entity_iri`."""
    return unquote(iri[len(ENTITY_NS):])


def relation_iri(relation_id: str) -> str:
    """The predicate IRI of a relation id (relation ids are plain identifiers)."""
    return RELATION_NS + relation_id


def nt_iri(iri: str) -> str:
    """An IRI as an N-Triples term."""
    return f"<{iri}>"


def nt_literal(value: str) -> str:
    """A string as an N-Triples literal (JSON escaping is a subset of N-Triples escaping)."""
    return encode_basestring(value)
