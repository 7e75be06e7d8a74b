"""Inspection queries that must give the same rows on the embedded store and on Neo4j."""

from __future__ import annotations

from typing import Any

SAME_ROW_QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("MATCH (n:Entity {id: $id}) RETURN n", {"id": "ex:dog"}),
    ("MATCH (n:Entity) WHERE n.label = $label RETURN n.id ORDER BY n.id", {"label": "bank"}),
    ("MATCH (d:Entity {id: $id})-[:hypernym*1..3]->(h:Entity) RETURN DISTINCT h.id, h.label "
     "ORDER BY h.id", {"id": "ex:puppy"}),
    ("MATCH (a:Entity)-[r]->(b:Entity) WHERE a.id = $id RETURN type(r), b.id ORDER BY b.id",
     {"id": "ex:car"}),
    ("MATCH (a:Entity)-[r:hypernym]->(b:Entity {id: $id}) RETURN a.label ORDER BY a.label "
     "LIMIT 2", {"id": "ex:fruit"}),
    ("MATCH (n:Entity) WHERE n.id IN $ids RETURN n.label, n.aliases ORDER BY n.label",
     {"ids": ["ex:dog", "ex:car", "ex:zebra"]}),
    ("MATCH (n:Entity) WHERE n.label STARTS WITH $p RETURN n.id ORDER BY n.id", {"p": "ca"}),
    ("MATCH (n:Entity) WHERE n.rank >= 2 AND n.common = true RETURN n.id, n.weight", {}),
    ("MATCH (r:Relation) RETURN r.id, r.label, r.inverse ORDER BY r.id", {}),
    ("MATCH (a:Entity {id: 'ex:dog'})-[r:antonym]->(b) RETURN r, b.label", {}),
]

#: Queries that must be refused as writes on both backends.
WRITE_QUERIES = [
    "CREATE (n:Entity {id: 'x', label: 'x'}) RETURN n",
    "MERGE (n:Entity {id: 'x'}) RETURN n",
    "MATCH (n:Entity {id: 'ex:dog'}) SET n.label = 'wolf' RETURN n",
    "MATCH (n:Entity {id: 'ex:dog'}) DETACH DELETE n",
    "MATCH (n:Entity {id: 'ex:dog'}) REMOVE n.label RETURN n",
    "LOAD CSV FROM 'file:///etc/passwd' AS line RETURN line",
    "CALL db.createLabel('Hacked')",
    "MATCH (n:Entity {id: 'ex:dog'}) // harmless?\nSET n.label = 'x' RETURN n",
    "MATCH (n:Entity) CALL (n) { SET n.pwned = true } RETURN count(*)",
    "MATCH (n:Entity) CALL { WITH n DELETE n } RETURN 1",
]
