"""``CompiledKG``: the immutable tensor snapshot that reasoning and retrieval run on.

A snapshot holds, for N entities, R relations and E triples:

* ``ids`` — entity ids, sorted (fixed-width UTF-8), so id → index is a binary search;
* CSR adjacency in both directions: ``out_indptr[N+1]``, ``out_dst[E]``, ``out_rel[E]`` and
  ``in_indptr[N+1]``, ``in_src[E]``, ``in_rel[E]``; each row sorted by (relation, neighbour);
* node texts (label, aliases, description, types, properties) as UTF-8 blobs + offsets;
* a lexicon: the sorted normal forms of every label and alias with their entity indices.

It is saved as one directory of ``.npy`` arrays (read memory-mapped, never pickled) and a
``meta.json``, and keyed by a SHA-256 content hash over the canonical arrays, so two stores
holding the same graph compile to byte-identical snapshots.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from ._gc import gc_paused
from .atomic_dir import written_aside
from .errors import SnapshotError
from .home import kgmm_home
from .lexicon import normalize_label, singular_forms
from .model import Entity, GraphData, Relation, Triple
from .stores.records import CANONICAL_JSON, entity_from_record

FORMAT_VERSION = 1
_ARRAYS = (
    "ids", "out_indptr", "out_dst", "out_rel", "in_indptr", "in_src", "in_rel",
    "label_blob", "label_offsets", "aliases_blob", "aliases_offsets",
    "description_blob", "description_offsets", "types_blob", "types_offsets",
    "properties_blob", "properties_offsets", "lex_keys", "lex_nodes",
)
_LIST_SEP = "\x1f"


def _blob(strings: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate strings as UTF-8: ``(blob uint8[B], offsets int64[n+1])``."""
    encoded = [s.encode("utf-8") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    if encoded:
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


def _csr(rows: np.ndarray, cols: np.ndarray, rels: np.ndarray,
         n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of (rows → cols, rels), each row sorted by (relation, column)."""
    order = np.lexsort((cols, rels, rows))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, cols[order].astype(np.int32), rels[order].astype(np.int16)


class CompiledKG:
    """An immutable, memory-mappable snapshot of a knowledge graph (see module docstring)."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict[str, Any],
                 path: Path | None = None) -> None:
        self._a = arrays
        self.meta = meta
        self.path = path
        self.relation_ids: list[str] = [r["id"] for r in meta["relations"]]
        self.relation_labels: list[str] = [r["label"] for r in meta["relations"]]
        rel_index = {r: i for i, r in enumerate(self.relation_ids)}
        self.relation_inverse: list[int] = [
            rel_index.get(r["inverse"] or "", -1) for r in meta["relations"]
        ]
        self._rel_index = rel_index

    # -- building ----------------------------------------------------------------------
    @classmethod
    def build(cls, data: GraphData) -> CompiledKG:
        """Compile a validated bundle into a snapshot."""
        with gc_paused():
            return cls._build(data.deduplicated())

    @classmethod
    def _build(cls, data: GraphData) -> CompiledKG:
        entities = sorted(data.entities, key=lambda e: e.id)
        relations = sorted(data.relations, key=lambda r: r.id)
        n = len(entities)
        index = {e.id: i for i, e in enumerate(entities)}
        rel_index = {r.id: i for i, r in enumerate(relations)}
        try:
            src = np.fromiter((index[t.subject] for t in data.triples), np.int64,
                              len(data.triples))
            dst = np.fromiter((index[t.object] for t in data.triples), np.int64,
                              len(data.triples))
            rel = np.fromiter((rel_index[t.relation] for t in data.triples), np.int64,
                              len(data.triples))
        except KeyError as exc:
            raise SnapshotError(f"triple refers to unknown entity or relation {exc}") from exc
        out_indptr, out_dst, out_rel = _csr(src, dst, rel, n)
        in_indptr, in_src, in_rel = _csr(dst, src, rel, n)
        encoded_ids = [e.id.encode("utf-8") for e in entities]
        width = max((len(b) for b in encoded_ids), default=1)
        arrays: dict[str, np.ndarray] = {
            "ids": np.array(encoded_ids, dtype=f"S{width}"),
            "out_indptr": out_indptr, "out_dst": out_dst, "out_rel": out_rel,
            "in_indptr": in_indptr, "in_src": in_src, "in_rel": in_rel,
        }
        arrays["label_blob"], arrays["label_offsets"] = _blob(e.label for e in entities)
        arrays["aliases_blob"], arrays["aliases_offsets"] = _blob(
            _LIST_SEP.join(e.aliases) for e in entities)
        arrays["description_blob"], arrays["description_offsets"] = _blob(
            e.description for e in entities)
        arrays["types_blob"], arrays["types_offsets"] = _blob(
            _LIST_SEP.join(e.types) for e in entities)
        arrays["properties_blob"], arrays["properties_offsets"] = _blob(
            CANONICAL_JSON.encode(e.properties) if e.properties else "" for e in entities)
        degree = np.diff(out_indptr) + np.diff(in_indptr)
        arrays["lex_keys"], arrays["lex_nodes"] = _lexicon(entities, degree)
        meta = {
            "format_version": FORMAT_VERSION,
            "num_nodes": n,
            "num_edges": len(out_dst),
            "relations": [{"id": r.id, "label": r.label, "inverse": r.inverse or ""}
                          for r in relations],
        }
        meta["content_hash"] = _content_hash(arrays, meta)
        return cls(arrays, meta)

    @classmethod
    def from_store(cls, store: Any) -> CompiledKG:
        """Compile whatever a store holds.

        A store that keeps its own snapshot (the embedded store does, per generation) hands it
        over; otherwise the store is read in full and compiled.
        """
        kept = getattr(store, "compiled", None)
        snapshot = kept() if kept is not None else None
        return snapshot if snapshot is not None else cls.build(store.export())

    # -- persistence -------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the snapshot to ``directory`` atomically (written aside, then renamed)."""
        target = Path(directory)
        if (target / "meta.json").exists():
            existing = json.loads((target / "meta.json").read_text(encoding="utf-8"))
            if existing.get("content_hash") == self.content_hash:
                return target
        with written_aside(target) as tmp:
            for name in _ARRAYS:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(self._a[name]),
                        allow_pickle=False)
            (tmp / "meta.json").write_text(json.dumps(self.meta, indent=1, ensure_ascii=False),
                                           encoding="utf-8")
        self.path = target
        return target

    def save_to_home(self, data_dir: str | os.PathLike[str] | None = None,
                     name: str = "default") -> Path:
        """Save under ``<KGMM_HOME>/compiled/<hash>/`` and point ``compiled/<name>`` at it."""
        root = kgmm_home(data_dir) / "compiled"
        path = self.save(root / self.content_hash)
        pointer = root / f"{name}.json"
        tmp = root / f".{name}.{uuid.uuid4().hex}.json"
        tmp.write_text(json.dumps({"content_hash": self.content_hash}), encoding="utf-8")
        os.replace(tmp, pointer)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = True) -> CompiledKG:
        """Open a saved snapshot; arrays are memory-mapped unless ``mmap=False``."""
        path = Path(path)
        meta_path = path / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SnapshotError(f"{path} is not a compiled KG snapshot (no meta.json)") from exc
        except json.JSONDecodeError as exc:
            raise SnapshotError(f"{meta_path}: corrupt meta.json ({exc})") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise SnapshotError(f"{path}: snapshot format {meta.get('format_version')!r}, "
                                f"this kgmm reads format {FORMAT_VERSION}; recompile it")
        arrays: dict[str, np.ndarray] = {}
        for name in _ARRAYS:
            file = path / f"{name}.npy"
            try:
                # plain ndarray views of the memory map: np.memmap's subclass overhead on
                # every fancy-indexing result would cost more than the lookups themselves
                arrays[name] = np.asarray(np.load(file, mmap_mode="r" if mmap else None,
                                                  allow_pickle=False))
            except (OSError, ValueError) as exc:
                raise SnapshotError(f"{file}: missing or corrupt array ({exc})") from exc
        kg = cls(arrays, meta, path)
        kg._check_shapes()
        return kg

    @classmethod
    def load_from_home(cls, data_dir: str | os.PathLike[str] | None = None,
                       name: str = "default") -> CompiledKG:
        """Open the snapshot that ``compiled/<name>`` points at."""
        root = kgmm_home(data_dir) / "compiled"
        pointer = root / f"{name}.json"
        if not pointer.exists():
            raise SnapshotError(f"no compiled KG named {name!r} under {root}; "
                                "run `kgmm kg compile` first")
        digest = json.loads(pointer.read_text(encoding="utf-8"))["content_hash"]
        return cls.load(root / digest)

    def verify(self) -> None:
        """Recompute the content hash and raise :class:`SnapshotError` if it differs."""
        actual = _content_hash(self._a, self.meta)
        if actual != self.content_hash:
            raise SnapshotError(f"{self.path}: content hash mismatch (stored "
                                f"{self.content_hash[:12]}, computed {actual[:12]})")

    def _check_shapes(self) -> None:
        n, e = self.num_nodes, self.num_edges
        expected = {"ids": n, "out_indptr": n + 1, "in_indptr": n + 1, "out_dst": e,
                    "out_rel": e, "in_src": e, "in_rel": e, "label_offsets": n + 1}
        for name, size in expected.items():
            if self._a[name].shape[0] != size:
                raise SnapshotError(f"{self.path}: array {name} has {self._a[name].shape[0]} "
                                    f"entries, expected {size}; the snapshot is corrupt")

    # -- sizes and ids -----------------------------------------------------------------
    @property
    def content_hash(self) -> str:
        return str(self.meta["content_hash"])

    @property
    def num_nodes(self) -> int:
        return int(self.meta["num_nodes"])

    @property
    def num_edges(self) -> int:
        return int(self.meta["num_edges"])

    @property
    def num_relations(self) -> int:
        return len(self.relation_ids)

    def __len__(self) -> int:
        return self.num_nodes

    def __repr__(self) -> str:
        return (f"CompiledKG(nodes={self.num_nodes}, edges={self.num_edges}, "
                f"relations={self.num_relations}, hash={self.content_hash[:12]})")

    def __contains__(self, entity_id: object) -> bool:
        return isinstance(entity_id, str) and self.find_index(entity_id) is not None

    def find_index(self, entity_id: str) -> int | None:
        """Index of an entity id, or None."""
        ids = self._a["ids"]
        key = entity_id.encode("utf-8")
        if len(key) > ids.dtype.itemsize:
            return None
        pos = int(np.searchsorted(ids, key))
        return pos if pos < len(ids) and ids[pos] == key else None

    def index_of(self, entity_id: str) -> int:
        """Index of an entity id; ``KeyError`` naming the id when absent."""
        index = self.find_index(entity_id)
        if index is None:
            raise KeyError(f"unknown entity id {entity_id!r}")
        return index

    def indices_of(self, entity_ids: Sequence[str]) -> np.ndarray:
        """Indices of several ids (vectorised); ``KeyError`` naming the missing ones."""
        ids = self._a["ids"]
        keys = np.array([i.encode("utf-8") for i in entity_ids], dtype=ids.dtype)
        pos = np.searchsorted(ids, keys).clip(max=max(len(ids) - 1, 0))
        found = ids[pos] == keys if len(ids) else np.zeros(len(keys), bool)
        lengths_ok = np.array([len(i.encode("utf-8")) <= ids.dtype.itemsize for i in entity_ids],
                              dtype=bool)
        found &= lengths_ok
        if not found.all():
            missing = [entity_ids[i] for i in np.flatnonzero(~found)[:10]]
            raise KeyError(f"unknown entity ids {missing}")
        return pos.astype(np.int64)

    def id_of(self, index: int) -> str:
        return bytes(self._a["ids"][index]).decode("utf-8")

    def ids_of(self, indices: Iterable[int]) -> list[str]:
        ids = self._a["ids"]
        return [bytes(ids[i]).decode("utf-8") for i in indices]

    def relation_index(self, relation_id: str) -> int:
        try:
            return self._rel_index[relation_id]
        except KeyError:
            raise KeyError(
                f"unknown relation {relation_id!r}; known: {self.relation_ids}") from None

    # -- node texts --------------------------------------------------------------------
    def _text(self, field: str, index: int) -> str:
        offsets = self._a[f"{field}_offsets"]
        start, end = int(offsets[index]), int(offsets[index + 1])
        return bytes(self._a[f"{field}_blob"][start:end]).decode("utf-8")

    def label(self, index: int) -> str:
        return self._text("label", index)

    def aliases(self, index: int) -> tuple[str, ...]:
        text = self._text("aliases", index)
        return tuple(text.split(_LIST_SEP)) if text else ()

    def description(self, index: int) -> str:
        return self._text("description", index)

    def types(self, index: int) -> tuple[str, ...]:
        text = self._text("types", index)
        return tuple(text.split(_LIST_SEP)) if text else ()

    def properties(self, index: int) -> dict[str, Any]:
        text = self._text("properties", index)
        return json.loads(text) if text else {}

    def entity(self, index: int) -> Entity:
        """The full entity at ``index``."""
        record = {"id": self.id_of(index), "label": self.label(index),
                  "aliases": list(self.aliases(index)), "description": self.description(index),
                  "types": list(self.types(index)), **self.properties(index)}
        return entity_from_record(record)

    def _texts(self, field: str) -> list[str]:
        """Every node's text of one field, decoded in bulk."""
        blob = self._a[f"{field}_blob"].tobytes()
        offsets = self._a[f"{field}_offsets"].tolist()
        return [blob[a:b].decode("utf-8") for a, b in pairwise(offsets)]

    def node_records(self, *, cypher_labels: bool = False) -> list[dict[str, Any]]:
        """Every node as the flat record stores keep.

        With ``cypher_labels`` each record also carries ``__labels__ = {"Entity"}`` (the node
        label grand-cypher matches on).
        """
        ids = self.ids_of(range(self.num_nodes))
        fields = zip(ids, self._texts("label"), self._texts("aliases"),
                     self._texts("description"), self._texts("types"),
                     self._texts("properties"), strict=True)
        records = []
        for node_id, label, aliases, description, types, properties in fields:
            record = {"id": node_id, "label": label,
                      "aliases": aliases.split(_LIST_SEP) if aliases else [],
                      "description": description,
                      "types": types.split(_LIST_SEP) if types else []}
            if properties:
                record.update(json.loads(properties))
            if cypher_labels:
                record["__labels__"] = {"Entity"}
            records.append(record)
        return records

    def to_graph_data(self) -> GraphData:
        """The snapshot's content as a :class:`GraphData` (entities in index order)."""
        with gc_paused():
            return self._to_graph_data()

    def _to_graph_data(self) -> GraphData:
        entities = [entity_from_record(r) for r in self.node_records()]
        ids = [e.id for e in entities]
        src, dst, rel = self.edge_arrays()
        rel_ids = self.relation_ids
        triples = [Triple(ids[s], rel_ids[r], ids[d])
                   for s, d, r in zip(src.tolist(), dst.tolist(), rel.tolist(), strict=True)]
        return GraphData(entities, self.relations(), triples, source=str(self.path or "<kg>"))

    def node_text(self, index: int) -> str:
        """The text that represents a node to a text encoder: ``label (aliases): description``."""
        label, aliases, desc = self.label(index), self.aliases(index), self.description(index)
        text = f"{label} ({', '.join(aliases)})" if aliases else label
        return f"{text}: {desc}" if desc else text

    def node_texts(self) -> list[str]:
        return [self.node_text(i) for i in range(self.num_nodes)]

    def relations(self) -> list[Relation]:
        return [Relation(r["id"], r["label"], r["inverse"] or None) for r in self.meta["relations"]]

    # -- structure ---------------------------------------------------------------------
    def out_edges(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(neighbours, relations)`` of the edges leaving ``index``."""
        lo, hi = int(self._a["out_indptr"][index]), int(self._a["out_indptr"][index + 1])
        return np.asarray(self._a["out_dst"][lo:hi]), np.asarray(self._a["out_rel"][lo:hi])

    def in_edges(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(neighbours, relations)`` of the edges entering ``index``."""
        lo, hi = int(self._a["in_indptr"][index]), int(self._a["in_indptr"][index + 1])
        return np.asarray(self._a["in_src"][lo:hi]), np.asarray(self._a["in_rel"][lo:hi])

    def degree(self) -> np.ndarray:
        """Total (in + out) degree of every node."""
        return np.diff(self._a["out_indptr"]) + np.diff(self._a["in_indptr"])

    def edge_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All edges as ``(src, dst, rel)`` in canonical (CSR) order."""
        indptr = np.asarray(self._a["out_indptr"])
        src = np.repeat(np.arange(self.num_nodes, dtype=np.int64), np.diff(indptr))
        return src, np.asarray(self._a["out_dst"], dtype=np.int64), np.asarray(
            self._a["out_rel"], dtype=np.int64)

    def array(self, name: str) -> np.ndarray:
        """A raw snapshot array (read-only view), for fast paths in other modules."""
        return self._a[name]

    # -- lexicon -----------------------------------------------------------------------
    def lookup(self, name: str, *, limit: int = 10, fold_plurals: bool = True) -> list[int]:
        """Entities whose label or alias equals ``name`` after normalisation.

        Ordered by (label before alias, alias position, degree descending). With
        ``fold_plurals`` a name with no exact match is retried in singular forms.
        """
        key = normalize_label(name)
        if not key:
            return []
        hits = self._lex_hits(key)
        if not hits and fold_plurals:
            for form in singular_forms(key):
                hits = self._lex_hits(form)
                if hits:
                    break
        return list(dict.fromkeys(hits))[:limit]

    def _lex_hits(self, key: str) -> list[int]:
        keys = self._a["lex_keys"]
        encoded = key.encode("utf-8")
        if len(encoded) > keys.dtype.itemsize:
            return []
        lo = int(np.searchsorted(keys, encoded, side="left"))
        hi = int(np.searchsorted(keys, encoded, side="right"))
        return [int(i) for i in self._a["lex_nodes"][lo:hi]]

    # -- subgraphs ---------------------------------------------------------------------
    def subgraph(self, seeds: Sequence[int] | Sequence[str] | np.ndarray, hops: int = 2,
                 fanout: int | Sequence[int] | None = None,
                 relations: Sequence[str] | None = None, max_nodes: int | None = None) -> Any:
        """The k-hop neighbourhood of ``seeds`` as a PyG ``Data`` (see :mod:`.subgraph`)."""
        from .subgraph import k_hop_subgraph_data

        return k_hop_subgraph_data(self, seeds, hops=hops, fanout=fanout, relations=relations,
                                   max_nodes=max_nodes)


def _lexicon(entities: list[Entity], degree: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (normal form, entity) pairs; within a key: label first, then alias order, hubs."""
    keys: list[bytes] = []
    is_alias: list[int] = []
    nodes: list[int] = []
    for index, entity in enumerate(entities):
        seen: set[str] = set()
        for rank, name in enumerate((entity.label, *entity.aliases)):
            key = normalize_label(name)
            if key and key not in seen:
                seen.add(key)
                keys.append(key.encode("utf-8"))
                is_alias.append(min(rank, 1))
                nodes.append(index)
    width = max((len(k) for k in keys), default=1)
    key_array = np.array(keys, dtype=f"S{width}")
    node_array = np.array(nodes, dtype=np.int32)
    order = np.lexsort((node_array, -degree[node_array], np.array(is_alias), key_array))
    return key_array[order], node_array[order]


def _content_hash(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    """SHA-256 over the relation table and every array (name, dtype, shape, bytes)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(meta["relations"], sort_keys=True).encode("utf-8"))
    for name in _ARRAYS:
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()
