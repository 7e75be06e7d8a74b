"""RDF files (Turtle, N-Triples, JSON-LD, N3, RDF/XML) as kgmm graph data, and back.

rdflib is imported inside the functions, so importing this module stays cheap.

Reading (:func:`read_rdf`) maps the RDF graph onto the model:

* **Entities** — every IRI or blank node that is a subject, or the object of an IRI-valued
  statement of an entity, except schema terms: IRIs in the ``rdf:``, ``rdfs:``, ``owl:`` and
  ``xsd:`` namespaces, properties (anything used as a predicate, typed as a property, or
  linked by ``owl:inverseOf``/``rdfs:subPropertyOf``/``rdfs:domain``/``rdfs:range``),
  ``owl:Ontology`` headers, RDF list cells and blank nodes typed only with ``rdf:``/``rdfs:``/
  ``owl:`` classes (restrictions, anonymous classes, axioms). ``rdf:type`` objects become
  types, not entities (unless they are subjects themselves).
* **Ids** — compacted with the caller's ``prefixes``, then the file's (``ex:dog``), then
  rdflib's well-known ones (``owl:``, ``skos:``, ``schema:``, ``foaf:`` …); a prefix name or
  namespace bound earlier in that order wins, the longest matching namespace is used, the
  empty prefix never is; otherwise the full IRI. IRIs under :data:`KGMM_ID` (written by
  :func:`write_rdf`) decode back to the id they encode. Blank nodes get ``_:b1``, ``_:b2`` …
  in the order of :func:`blank_node_order` (colour refinement over their statements), so the
  same graph in any syntax gets the same ids whatever the labels in the file; they are stable
  for a given content, not across edits. Two nodes compacting to one id is an error.
* **Label** — from ``skos:prefLabel`` / ``rdfs:label``, preferring the ``languages`` in order
  (default English: ``en``, then ``en-*``), then untagged, then other tags; ``prefLabel`` wins
  a tie. Without one: the IRI's local name, percent-decoded, ``_`` → space.
* **Aliases** — ``skos:altLabel``, ``skos:hiddenLabel``, ``schema:alternateName`` and the
  labels not chosen, deduplicated and sorted. **Description** — the best of
  ``skos:definition``, ``dcterms:description``, ``schema:description``, ``dc:description``,
  ``rdfs:comment`` (language first, then that order). ``languages`` also filters these texts:
  tagged literals in other languages are ignored. **Types** — ``rdf:type`` IRIs, compacted,
  sorted.
* **Relations** — predicates with an entity object, plus declared object properties and both
  ends of ``owl:inverseOf``. Id: the predicate's local name, sanitized to
  ``[A-Za-z_][A-Za-z0-9_]*`` (``rdfs:subClassOf`` → ``subClassOf``); when several predicates
  share a local name, each becomes ``<prefix>_<local>`` (``ex_knows``, ``foaf_knows``), then
  ``_2``, ``_3`` … in IRI order. Label: the predicate's own label, else its local name split
  into words (``sub class of``). Inverse: from ``owl:inverseOf`` (either direction); an
  ``owl:SymmetricProperty`` is its own inverse; with several candidates the smallest id wins.
* **Properties** — other literal-valued predicates, keyed by local name (same collision rule;
  names that clash with :data:`~kgmm.graph.model.RESERVED_KEYS` are qualified too).
  ``xsd:boolean`` → bool, integer types → int, ``xsd:double``/``float``/``decimal`` → float,
  anything else (dates, language-tagged text) → its lexical form. Several values → a sorted
  tuple of lexical forms; an RDF list of literals → a tuple in list order (``()`` for
  ``rdf:nil``). Lists of resources are skipped.
* The result is sorted (entities and relations by id, triples by subject, relation, object)
  and validated.

Writing (:func:`write_rdf`) uses this vocabulary:

* an entity is ``<iri> rdfs:label …; skos:altLabel …; dcterms:description …; rdf:type …``;
* relations and property predicates live in :data:`KGMM_NS` (``kgmm:hypernym``); a relation is
  declared ``kgmm:r a owl:ObjectProperty; rdfs:label …; owl:inverseOf kgmm:inv``;
* properties: bool → ``xsd:boolean``, int → ``xsd:integer``, float → ``xsd:double``, str →
  plain literal, tuple → an RDF list of plain literals;
* entity ids and types become IRIs: ``prefix:local`` when ``prefix`` is given in ``prefixes``
  (or is a well-known one) and compacts back to the same id; a full ``http(s)``/``urn`` IRI
  as it is; anything else (``wn:dog.n.01``, ``_:b1``, and entities that would land in the
  ``rdf:``/``rdfs:``/``owl:``/``xsd:``/kgmm namespaces) is minted as ``KGMM_ID`` +
  percent-encoded id.

So ``read_rdf(write_rdf(x))`` gives ``x`` back (sorted, aliases sorted, inverses made mutual)
in every format (RDF/XML refuses property names that are not XML names). With ``prefixes``,
Turtle and N3 declare every prefix given and JSON-LD puts them in its context; for N-Triples
and RDF/XML pass the same ``prefixes`` to :func:`read_rdf`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, unquote

from ..errors import InputError
from ..model import (
    RESERVED_KEYS,
    Entity,
    GraphData,
    PropertyValue,
    Relation,
    Triple,
)
from .tsv import PathLike, label_from_id, open_binary, words_from_name

if TYPE_CHECKING:
    from rdflib import Graph
    from rdflib.term import Literal

#: Namespace of kgmm's own RDF terms: relation and property predicates.
KGMM_NS = "https://kgmm.dev/ns#"
#: Base under which :func:`write_rdf` mints IRIs for ids that are not IRIs.
KGMM_ID = "https://kgmm.dev/id/"

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
OWL = "http://www.w3.org/2002/07/owl#"
XSD = "http://www.w3.org/2001/XMLSchema#"
SKOS = "http://www.w3.org/2004/02/skos/core#"
DCTERMS = "http://purl.org/dc/terms/"
DC = "http://purl.org/dc/elements/1.1/"
SCHEMA = "https://schema.org/"
SCHEMA_HTTP = "http://schema.org/"

RDF_TYPE = RDF + "type"
RDF_FIRST, RDF_REST, RDF_NIL = RDF + "first", RDF + "rest", RDF + "nil"
RDFS_LABEL = RDFS + "label"
OWL_INVERSE_OF = OWL + "inverseOf"

#: Namespaces whose IRIs are schema terms, never entities.
VOCABULARY_NAMESPACES = (RDF, RDFS, OWL, XSD)

LABEL_PREDICATES = (SKOS + "prefLabel", RDFS_LABEL)
ALIAS_PREDICATES = (SKOS + "altLabel", SKOS + "hiddenLabel", SCHEMA + "alternateName",
                    SCHEMA_HTTP + "alternateName")
DESCRIPTION_PREDICATES = (SKOS + "definition", DCTERMS + "description", SCHEMA + "description",
                          SCHEMA_HTTP + "description", DC + "description", RDFS + "comment")
_TEXT_PREDICATES = frozenset((*LABEL_PREDICATES, *ALIAS_PREDICATES, *DESCRIPTION_PREDICATES))
_SPECIAL_PREDICATES = _TEXT_PREDICATES | {RDF_TYPE}

OBJECT_PROPERTY_CLASSES = frozenset(OWL + name for name in (
    "ObjectProperty", "SymmetricProperty", "TransitiveProperty", "AsymmetricProperty",
    "ReflexiveProperty", "IrreflexiveProperty", "InverseFunctionalProperty"))
PROPERTY_CLASSES = OBJECT_PROPERTY_CLASSES | {
    RDF + "Property", OWL + "DatatypeProperty", OWL + "AnnotationProperty",
    OWL + "FunctionalProperty", OWL + "OntologyProperty"}
_PROPERTY_LINKS = frozenset({OWL_INVERSE_OF, RDFS + "subPropertyOf", OWL + "equivalentProperty",
                             OWL + "propertyDisjointWith"})
_PROPERTY_SUBJECT_LINKS = frozenset({RDFS + "domain", RDFS + "range"})

_INTEGER_TYPES = frozenset(XSD + name for name in (
    "integer", "int", "long", "short", "byte", "nonNegativeInteger", "positiveInteger",
    "negativeInteger", "nonPositiveInteger", "unsignedInt", "unsignedLong", "unsignedShort",
    "unsignedByte"))
_FLOAT_TYPES = frozenset(XSD + name for name in ("double", "float", "decimal"))

_FORMAT_ALIASES = {
    "turtle": "turtle", "ttl": "turtle", "nt": "nt", "ntriples": "nt", "n-triples": "nt",
    "nt11": "nt", "json-ld": "json-ld", "jsonld": "json-ld", "json": "json-ld", "n3": "n3",
    "xml": "xml", "rdf": "xml", "rdf/xml": "xml", "rdfxml": "xml", "pretty-xml": "xml",
    "owl": "xml",
}
_SUFFIX_FORMATS = {
    ".ttl": "turtle", ".turtle": "turtle", ".nt": "nt", ".jsonld": "json-ld", ".json": "json-ld",
    ".n3": "n3", ".rdf": "xml", ".xml": "xml", ".owl": "xml",
}
_FORMAT_NAMES = {"turtle": "Turtle", "nt": "N-Triples", "json-ld": "JSON-LD", "n3": "N3",
                 "xml": "RDF/XML"}

_WEB_IRI = re.compile(r"^(?:https?|urn|ftp|file|mailto|tag):\S+$")
_IRI_UNSAFE = re.compile(r'[\x00-\x20<>"{}|\\^`]')
_SAFE_CHARS = "/:@!$&'()*+,;="
_SEPARATORS = "/#:"
_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")

Node = str  # IRIs as themselves, blank nodes as "_:<label>"; literals stay rdflib Literals
Object = Any  # Node | Literal


# --- public API -----------------------------------------------------------------------------


def read_rdf(
    path: PathLike,
    format: str | None = None,
    *,
    prefixes: Mapping[str, str] | None = None,
    languages: Iterable[str] | None = None,
) -> GraphData:
    """Read an RDF file into a validated :class:`GraphData` (mapping in the module docstring).

    Args:
        path: the file; ``.gz`` compression is undone transparently.
        format: ``turtle``, ``nt``, ``json-ld``, ``n3`` or ``xml``; guessed from the suffix
            (``.ttl .nt .jsonld .json .n3 .rdf .xml .owl``) when ``None``.
        prefixes: ``{prefix: namespace}`` for compact ids, before the file's own.
        languages: preferred language tags for labels and descriptions (default English
            first, all kept); when given, texts tagged with other languages are ignored.

    Raises:
        InputError: a syntax error (with the file and line where the parser tells it) or
            content that cannot be mapped; nothing is returned half-read.
    """
    path = Path(path)
    fmt = _format(path, format)
    graph = _parse(path, fmt)
    bindings = [*(prefixes or {}).items(), *_namespaces(graph), *_default_namespaces()]
    prefer = tuple(languages) if languages is not None else ("en",)
    mapper = _Mapper(_statements(graph), _Compactor(bindings), prefer, languages is not None,
                     str(path))
    return mapper.graph_data()


def write_rdf(
    data: GraphData,
    path: PathLike,
    format: str = "turtle",
    *,
    prefixes: Mapping[str, str] | None = None,
) -> Path:
    """Write graph data as RDF (vocabulary in the module docstring); return the path.

    The file is replaced atomically; a ``.gz`` suffix compresses it.
    """
    import rdflib

    data.validate()
    path = Path(path)
    fmt = _format(path, format)
    if fmt == "xml":
        _check_xml_names(data, path)
    user = dict(prefixes or {})
    compactor = _Compactor([*user.items(), *_default_namespaces()])
    graph = rdflib.Graph(bind_namespaces="none")
    for prefix, namespace in _write_bindings(user):
        graph.bind(prefix, namespace, override=True, replace=True)
    _Writer(graph, compactor).add(data)
    text = _serialize(graph, fmt, user)
    _write_atomically(path, text)
    return path


# --- parsing --------------------------------------------------------------------------------


def _format(path: Path, format: str | None) -> str:
    """Normalize a format name, or guess it from the (un-gzipped) suffix."""
    if format is not None:
        fmt = _FORMAT_ALIASES.get(format.lower())
        if fmt is None:
            raise InputError(f"unknown RDF format {format!r}; use one of "
                             f"{sorted(set(_FORMAT_ALIASES.values()))}", source=path)
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = _SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InputError(f"cannot tell the RDF format from the name; pass format= (one of "
                         f"{sorted(set(_FORMAT_ALIASES.values()))})", source=path)
    return fmt


def _parse(path: Path, fmt: str) -> Graph:
    """Parse the whole file into a fresh rdflib graph, or raise :class:`InputError`."""
    import rdflib

    graph = rdflib.Graph(bind_namespaces="none")
    with open_binary(path) as handle:
        if fmt == "nt":
            _parse_ntriples(handle, graph, path)
            return graph
        try:
            graph.parse(file=handle, format=fmt, publicID=path.resolve().as_uri())
        except Exception as exc:  # rdflib raises many types; each is an input problem here
            raise _syntax_error(exc, path, fmt) from exc
    return graph


def _parse_ntriples(handle: Any, graph: Graph, path: Path) -> None:
    """Parse N-Triples counting lines, since rdflib's errors do not say where they are."""
    import codecs

    from rdflib.plugins.parsers.ntriples import NTGraphSink, ParseError, W3CNTriplesParser

    class CountingParser(W3CNTriplesParser):
        line_number = 0

        def readline(self) -> str | None:
            line = super().readline()
            if line is not None:
                self.line_number += 1
            return line

    parser = CountingParser(NTGraphSink(graph))
    try:
        parser.parse(codecs.getreader("utf-8")(handle))
    except ParseError as exc:
        cause = str(exc.__context__ or exc)
        detail = "" if cause.startswith(("Failed to eat", "Invalid line")) else f"{cause}; "
        near = (parser.line or "").strip()[:80]
        where = f"cannot parse {near!r}" if near else "statement ends early (no final ' .'?)"
        raise InputError(f"invalid N-Triples: {detail}{where}", source=path,
                         line=parser.line_number) from exc
    except UnicodeDecodeError as exc:
        raise InputError("invalid N-Triples: not valid UTF-8", source=path,
                         line=parser.line_number + 1) from exc


def _syntax_error(exc: Exception, path: Path, fmt: str) -> InputError:
    """Turn a parser exception into an :class:`InputError` with the line when it is known."""
    line, text = _error_line(exc)
    reason = (getattr(exc, "_why", None) or getattr(exc, "msg", None)
              or (exc.getMessage() if hasattr(exc, "getMessage") else None) or str(exc))
    message = f"invalid {_FORMAT_NAMES[fmt]}: {reason}"
    if text:
        message += f" in {text.strip()[:80]!r}"
    return InputError(message, source=path, line=line)


def _error_line(exc: Exception) -> tuple[int | None, str | None]:
    """Line number (1-based) and, for Turtle/N3, the line's text from a parser exception."""
    document, index = getattr(exc, "_str", None), getattr(exc, "_i", None)
    if isinstance(document, bytes) and isinstance(index, int) and 0 <= index <= len(document):
        text = document.decode("utf-8", "replace")
        line = text.count("\n", 0, index) + 1
        return line, text.split("\n")[line - 1]
    if isinstance(getattr(exc, "lines", None), int):
        return exc.lines + 1, None  # type: ignore[attr-defined]
    if hasattr(exc, "getLineNumber"):  # xml.sax.SAXParseException
        return exc.getLineNumber(), None
    lineno = getattr(exc, "lineno", None)  # json.JSONDecodeError
    return (lineno if isinstance(lineno, int) else None), None


def _namespaces(graph: Graph) -> list[tuple[str, str]]:
    """The prefixes the parsed file bound."""
    return [(prefix, str(namespace)) for prefix, namespace in graph.namespaces()]


def _default_namespaces() -> list[tuple[str, str]]:
    """rdflib's well-known prefixes (``owl``, ``skos``, ``schema`` …), in a fixed order."""
    import rdflib

    defaults = rdflib.Graph(bind_namespaces="rdflib").namespaces()
    return sorted((prefix, str(namespace)) for prefix, namespace in defaults)


def _statements(graph: Graph) -> list[tuple[Node, Node, Object]]:
    """The graph's triples, in parse order, with IRIs as ``str`` and blank nodes as ``_:<id>``."""
    from rdflib import Literal, URIRef

    def node(term: Any) -> Any:
        if isinstance(term, Literal):
            return term
        if isinstance(term, URIRef):
            return str(term)
        return f"_:{term}"

    return [(node(s), node(p), node(o)) for s, p, o in graph]


# --- ids ------------------------------------------------------------------------------------


def blank_node_order(statements: list[tuple[Node, Node, Object]]) -> list[Node]:
    """Blank nodes in an order that does not depend on their labels or on the syntax.

    Colour refinement (Weisfeiler-Lehman): a node's colour hashes its own statements, with
    other blank nodes seen through their colours, until the partition stops growing. Nodes
    sort by colour; nodes no round can tell apart keep their order of first appearance.
    """
    first_seen: dict[Node, int] = {}
    edges: dict[Node, list[tuple[str, Node, Object]]] = defaultdict(list)
    for index, (s, p, o) in enumerate(statements):
        for term in (s, o):
            if _is_blank(term):
                first_seen.setdefault(term, index)
        if _is_blank(s):
            edges[s].append(("out", p, o))
        if _is_blank(o):
            edges[o].append(("in", p, s))
    colours = dict.fromkeys(first_seen, "")
    for _ in range(16):
        refined = {node: _colour(node, edges[node], colours) for node in colours}
        settled = len(set(refined.values())) == len(set(colours.values()))
        colours = refined
        if settled:
            break
    return sorted(first_seen, key=lambda node: (colours[node], first_seen[node]))


def _is_blank(term: Object) -> bool:
    """Blank nodes are plain strings ``_:…`` (IRIs are plain strings, literals are not)."""
    return type(term) is str and term.startswith("_:")


def _colour(node: Node, edges: list[tuple[str, Node, Object]], colours: dict[Node, str]) -> str:
    """Hash of a blank node's colour and its statements, other blank nodes by colour."""
    def term(value: Object) -> str:
        if _is_blank(value):
            return "_:" + colours[value]
        if type(value) is not str:  # a literal: as the mapping will see it
            return f"{_python_value(value)!r}@{value.language or ''}"
        return str(value)

    parts = sorted(f"{direction} {predicate} {term(other)}"
                   for direction, predicate, other in edges)
    digest = hashlib.blake2b(digest_size=12)
    digest.update(colours[node].encode())
    for part in parts:
        digest.update(b"\n" + part.encode())
    return digest.hexdigest()


class _Compactor:
    """Maps IRIs to compact ids (``ex:dog``) and back, with a fixed set of prefixes."""

    def __init__(self, bindings: Iterable[tuple[str, str]]) -> None:
        self.namespaces: dict[str, str] = {}  # prefix -> namespace, first binding wins
        by_namespace: dict[str, str] = {}
        for prefix, namespace in bindings:
            if (not prefix or prefix == "xml" or prefix in self.namespaces
                    or namespace in by_namespace):
                continue
            self.namespaces[prefix] = namespace
            by_namespace[namespace] = prefix
        self._regular = {ns: p for ns, p in by_namespace.items() if ns[-1:] in _SEPARATORS}
        self._irregular = [(ns, p) for ns, p in by_namespace.items() if ns[-1:] not in _SEPARATORS]
        self._cache: dict[str, tuple[str, str] | None] = {}

    def match(self, iri: str) -> tuple[str, str] | None:
        """``(namespace, prefix)`` of the longest namespace that ``iri`` extends, if any."""
        if iri in self._cache:
            return self._cache[iri]
        best: tuple[str, str] | None = None
        for index in range(len(iri) - 2, -1, -1):
            if iri[index] in _SEPARATORS and iri[: index + 1] in self._regular:
                best = (iri[: index + 1], self._regular[iri[: index + 1]])
                break
        for namespace, prefix in self._irregular:
            if iri.startswith(namespace) and len(iri) > len(namespace) \
                    and (best is None or len(namespace) > len(best[0])):
                best = (namespace, prefix)
        self._cache[iri] = best
        return best

    def compact(self, iri: str) -> str:
        """The compact id of an IRI (``KGMM_ID`` IRIs decode to the id they carry)."""
        if iri.startswith(KGMM_ID) and len(iri) > len(KGMM_ID):
            return unquote(iri[len(KGMM_ID):])
        found = self.match(iri)
        return f"{found[1]}:{iri[len(found[0]):]}" if found else iri

    def prefix(self, iri: str) -> str | None:
        """The prefix whose namespace ``iri`` extends, if any."""
        found = self.match(iri)
        return found[1] if found else None

    def expand(self, identifier: str, *, entity: bool) -> str:
        """The IRI that :meth:`compact` maps back to ``identifier`` (see :func:`write_rdf`)."""
        prefix, sep, local = identifier.partition(":")
        candidates = []
        if sep and prefix in self.namespaces:
            candidates.append(self.namespaces[prefix] + local)
        if _WEB_IRI.match(identifier):
            candidates.append(identifier)
        for iri in candidates:
            if _IRI_UNSAFE.search(iri) or self.compact(iri) != identifier:
                continue
            if entity and (iri.startswith((*VOCABULARY_NAMESPACES, KGMM_NS))):
                continue
            return iri
        return KGMM_ID + quote(identifier, safe=_SAFE_CHARS)


def local_name(iri: str) -> str:
    """The percent-decoded local name of an IRI (``rdfs:subClassOf`` → ``subClassOf``)."""
    if iri.startswith(KGMM_NS) and len(iri) > len(KGMM_NS):
        return unquote(iri[len(KGMM_NS):])
    stripped = iri.rstrip("/#:") or iri
    return unquote(re.split(r"[#/:]", stripped)[-1]) or stripped


def relation_name(local: str) -> str:
    """Sanitize a local name into a relation id matching ``RELATION_ID_PATTERN``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", local) or "relation"
    if name[0].isdigit():
        name = "_" + name
    return name[:64]


def _assign_names(
    iris: Iterable[str],
    compactor: _Compactor,
    sanitize: Callable[[str], str],
    reserved: frozenset[str] = frozenset(),
    max_length: int = 10_000,
) -> dict[str, str]:
    """Name predicates by local name; names shared by several IRIs get ``<prefix>_`` and ``_n``."""
    groups: dict[str, list[str]] = defaultdict(list)
    for iri in sorted(set(iris)):
        groups[sanitize(local_name(iri))].append(iri)
    names = {group[0]: name for name, group in groups.items()
             if len(group) == 1 and name not in reserved}
    taken = set(reserved) | set(names.values())
    for name, group in sorted(groups.items()):
        if len(group) == 1 and name not in reserved:
            continue
        for iri in group:
            prefix = compactor.prefix(iri)
            base = sanitize(f"{prefix}_{name}") if prefix else name
            candidate, number = base, 2
            while candidate in taken:
                suffix = f"_{number}"
                candidate, number = base[: max_length - len(suffix)] + suffix, number + 1
            names[iri] = candidate
            taken.add(candidate)
    return names


# --- mapping --------------------------------------------------------------------------------


@dataclass
class _Texts:
    """Text literals of one node, grouped by role."""

    labels: list[tuple[int, Literal]] = field(default_factory=list)  # (predicate rank, literal)
    aliases: list[Literal] = field(default_factory=list)
    descriptions: list[tuple[int, Literal]] = field(default_factory=list)


class _Mapper:
    """Turns plain-python statements into :class:`GraphData` (rules in the module docstring)."""

    def __init__(self, statements: list[tuple[Node, Node, Object]], compactor: _Compactor,
                 languages: tuple[str, ...], strict_languages: bool, source: str) -> None:
        from rdflib import Literal

        self._literal = Literal
        self.compactor = compactor
        self.languages = tuple(language.lower() for language in languages)
        self.strict_languages = strict_languages
        self.source = source
        self.spo: dict[Node, dict[Node, list[Object]]] = defaultdict(lambda: defaultdict(list))
        for s, p, o in statements:
            self.spo[s][p].append(o)
        self.predicates = {p for s, p, _ in statements}
        self.blank_order = blank_node_order(statements)
        self.properties = self._property_nodes(statements)
        self._entity_cache: dict[Node, bool] = {}

    # classification

    def _property_nodes(self, statements: list[tuple[Node, Node, Object]]) -> set[Node]:
        nodes = set(self.predicates)
        for s, p, o in statements:
            if (p == RDF_TYPE and o in PROPERTY_CLASSES) or p in _PROPERTY_SUBJECT_LINKS:
                nodes.add(s)
            elif p in _PROPERTY_LINKS:
                nodes.add(s)
                if not self._is_literal(o):
                    nodes.add(o)
        return nodes

    def _is_literal(self, term: Object) -> bool:
        return isinstance(term, self._literal)

    def _types(self, node: Node) -> list[Node]:
        return [o for o in self.spo.get(node, {}).get(RDF_TYPE, []) if not self._is_literal(o)]

    def is_entity(self, node: Object) -> bool:
        """Whether a node becomes an entity (not a literal, schema term or structure)."""
        if self._is_literal(node):
            return False
        if node not in self._entity_cache:
            self._entity_cache[node] = self._classify(node)
        return self._entity_cache[node]

    def _classify(self, node: Node) -> bool:
        if node in self.properties or node.startswith(VOCABULARY_NAMESPACES):
            return False
        types = self._types(node)
        if OWL + "Ontology" in types:
            return False
        if node.startswith("_:"):
            own = self.spo.get(node, {})
            if RDF_FIRST in own or RDF_REST in own:
                return False
            if types and all(t.startswith(VOCABULARY_NAMESPACES) for t in types):
                return False
        return True

    def entity_nodes(self) -> list[Node]:
        """Entity subjects plus entity objects of their non-special statements."""
        nodes = {s for s in self.spo if self.is_entity(s)}
        for s in list(nodes):
            for p, objects in self.spo[s].items():
                if p not in _SPECIAL_PREDICATES:
                    nodes.update(o for o in objects if self.is_entity(o))
        return sorted(nodes)

    # ids

    def entity_ids(self, nodes: list[Node]) -> dict[Node, str]:
        """Compact ids for IRIs, ``_:bN`` for blank nodes; two nodes on one id is an error."""
        wanted = set(nodes)
        blanks = [node for node in self.blank_order if node in wanted]
        ids = {node: f"_:b{number}" for number, node in enumerate(blanks, start=1)}
        owners: dict[str, Node] = {}
        for node in nodes:
            if node not in ids:
                ids[node] = self.compactor.compact(node)
            other = owners.setdefault(ids[node], node)
            if other != node:
                raise InputError(f"<{other}> and <{node}> both map to entity id {ids[node]!r}",
                                 source=self.source)
        return ids

    # texts

    def _language_rank(self, literal: Literal) -> tuple[int, str] | None:
        """Sort key of a text literal by language; ``None`` when filtered out."""
        tag = (literal.language or "").lower()
        if not tag:
            return 2 * len(self.languages), ""
        for index, language in enumerate(self.languages):
            if tag == language:
                return 2 * index, tag
            if tag.startswith(language + "-"):
                return 2 * index + 1, tag
        if self.strict_languages:
            return None
        return 2 * len(self.languages) + 1, tag

    def texts(self, node: Node) -> _Texts:
        """The label, alias and description literals of a node that pass the language filter."""
        texts = _Texts()
        for p, objects in self.spo.get(node, {}).items():
            if p not in _TEXT_PREDICATES:
                continue
            for o in objects:
                if not self._is_literal(o) or not str(o).strip() or self._language_rank(o) is None:
                    continue
                if p in LABEL_PREDICATES:
                    texts.labels.append((LABEL_PREDICATES.index(p), o))
                elif p in ALIAS_PREDICATES:
                    texts.aliases.append(o)
                else:
                    texts.descriptions.append((DESCRIPTION_PREDICATES.index(p), o))
        return texts

    def _best(self, candidates: list[tuple[int, Literal]]) -> Literal | None:
        def key(item: tuple[int, Literal]) -> tuple[Any, ...]:
            rank, literal = item
            return (*self._language_rank(literal), rank, str(literal).strip())  # type: ignore[misc]

        return min(candidates, key=key)[1] if candidates else None

    def label(self, node: Node, entity_id: str, texts: _Texts) -> str:
        """The best label literal, else a label derived from the IRI (or the blank node id)."""
        best = self._best(texts.labels)
        if best is not None:
            return str(best).strip()
        if node.startswith("_:"):
            return entity_id
        return label_from_id(self.compactor.compact(node) if node.startswith(KGMM_ID) else node)

    # properties

    def _collection(self, node: Object) -> list[Object] | None:
        """Members of an RDF list, or ``None`` when ``node`` is not a well-formed list."""
        members: list[Object] = []
        seen: set[Node] = set()
        while node != RDF_NIL:
            own = self.spo.get(node) if not self._is_literal(node) else None
            if not own or node in seen or len(own.get(RDF_FIRST, [])) != 1 \
                    or len(own.get(RDF_REST, [])) != 1:
                return None
            seen.add(node)
            members.append(own[RDF_FIRST][0])
            node = own[RDF_REST][0]
        return members

    def property_value(self, term: Object) -> _Found | None:
        """What a property object stands for: one literal, or an RDF list of literals."""
        if self._is_literal(term):
            return _Found(False, [term])
        members = self._collection(term)
        if members is None or not all(self._is_literal(m) for m in members):
            return None
        return _Found(True, members)

    # assembly

    def graph_data(self) -> GraphData:
        """Map the whole graph; the result is sorted and validated."""
        nodes = self.entity_nodes()
        ids = self.entity_ids(nodes)
        edges, values = self._edges_and_values(nodes)
        relation_ids = self._relation_ids(p for _, p, _ in edges)
        property_names = _assign_names((p for found in values.values() for p in found),
                                       self.compactor, lambda name: name, RESERVED_KEYS)
        entities = sorted((self._entity(node, ids[node], values.get(node, {}), property_names)
                           for node in nodes), key=lambda entity: entity.id)
        triples = sorted({Triple(ids[s], relation_ids[p], ids[o]) for s, p, o in edges},
                         key=lambda t: (t.subject, t.relation, t.object))
        data = GraphData(entities, self._relations(relation_ids), triples, source=self.source)
        return data.validate()

    def _edges_and_values(
        self, nodes: list[Node]
    ) -> tuple[set[tuple[Node, Node, Node]], dict[Node, dict[Node, list[_Found]]]]:
        """Entity-to-entity statements, and literal values per entity and predicate."""
        edges: set[tuple[Node, Node, Node]] = set()
        values: dict[Node, dict[Node, list[_Found]]] = {}
        for s in nodes:
            for p, objects in self.spo.get(s, {}).items():
                if p in _SPECIAL_PREDICATES:
                    continue
                for o in objects:
                    if self.is_entity(o):
                        edges.add((s, p, o))
                    elif (found := self.property_value(o)) is not None:
                        values.setdefault(s, {}).setdefault(p, []).append(found)
        return edges, values

    def _relation_ids(self, used: Iterable[Node]) -> dict[Node, str]:
        """Ids of every relation predicate: used ones, declared ones and inverse ends."""
        iris = set(used)
        for node in self.properties:
            if node.startswith("_:"):
                continue
            if OBJECT_PROPERTY_CLASSES.intersection(self._types(node)):
                iris.add(node)
            inverses = [o for o in self.spo.get(node, {}).get(OWL_INVERSE_OF, [])
                        if not self._is_literal(o) and not o.startswith("_:")]
            if inverses:
                iris.add(node)
                iris.update(inverses)
        return _assign_names(iris, self.compactor, relation_name, max_length=64)

    def _relations(self, relation_ids: dict[Node, str]) -> list[Relation]:
        inverses: dict[str, set[str]] = defaultdict(set)
        for iri, name in relation_ids.items():
            if OWL + "SymmetricProperty" in self._types(iri):
                inverses[name].add(name)
            for other in self.spo.get(iri, {}).get(OWL_INVERSE_OF, []):
                if other in relation_ids:
                    inverses[name].add(relation_ids[other])
                    inverses[relation_ids[other]].add(name)
        relations = []
        for iri, name in relation_ids.items():
            best = self._best(self.texts(iri).labels)
            label = str(best).strip() if best is not None else words_from_name(local_name(iri))
            inverse = min(inverses[name]) if inverses.get(name) else None
            relations.append(Relation(name, label, inverse))
        return sorted(relations, key=lambda relation: relation.id)

    def _entity(self, node: Node, entity_id: str, values: dict[Node, list[_Found]],
                names: dict[Node, str]) -> Entity:
        """Assemble one entity from its texts, types and literal values."""
        texts = self.texts(node)
        label = self.label(node, entity_id, texts)
        others = [str(lit).strip() for _, lit in texts.labels] + \
            [str(lit).strip() for lit in texts.aliases]
        aliases = tuple(sorted(set(others) - {label}))
        best = self._best(texts.descriptions)
        description = str(best).strip() if best is not None else ""
        types = tuple(sorted({self.compactor.compact(t) for t in self._types(node)
                              if not t.startswith("_:")}))
        properties = dict(sorted((names[p], _property_value(found)) for p, found in values.items()))
        return Entity(entity_id, label, aliases, description, types, properties)


class _Found(NamedTuple):
    """One object of a property statement: a literal, or the members of an RDF list."""

    is_list: bool
    members: list[Literal]


def _property_value(found: list[_Found]) -> PropertyValue:
    """One value (a list gives a tuple), or a sorted tuple of lexical forms for several."""
    if len(found) == 1:
        is_list, members = found[0]
        return tuple(str(m) for m in members) if is_list else _python_value(members[0])
    return tuple(sorted({str(member) for item in found for member in item.members}))


def _python_value(literal: Literal) -> str | int | float | bool:
    """bool / int / float for XSD boolean, integer and decimal types; else the lexical form."""
    text = str(literal)
    datatype = str(literal.datatype) if literal.datatype is not None else ""
    try:
        if datatype == XSD + "boolean":
            normalized = text.strip()
            if normalized in ("true", "1", "false", "0"):
                return normalized in ("true", "1")
        elif datatype in _INTEGER_TYPES:
            return int(text.strip())
        elif datatype in _FLOAT_TYPES:
            return float(text.strip())
    except ValueError:
        pass
    return text


# --- writing --------------------------------------------------------------------------------


def _check_xml_names(data: GraphData, path: Path) -> None:
    """RDF/XML spells predicates as XML names: refuse property keys that cannot be one."""
    for index, entity in enumerate(data.entities):
        for key in entity.properties:
            if not _XML_NAME.match(key):
                raise InputError(f"property {key!r} of entity {entity.id!r} is not an XML name, "
                                 "so RDF/XML cannot hold it; write Turtle, N-Triples or JSON-LD",
                                 source=path, record=index, field="properties")


_WRITE_PREFIXES = {"kgmm": KGMM_NS, "rdf": RDF, "rdfs": RDFS, "owl": OWL, "xsd": XSD,
                   "skos": SKOS, "dcterms": DCTERMS}


def _write_bindings(user: Mapping[str, str]) -> list[tuple[str, str]]:
    """Prefixes the written file declares: kgmm's and the standard ones, then the caller's."""
    for prefix, namespace in user.items():
        if _WRITE_PREFIXES.get(prefix, namespace) != namespace:
            raise InputError(f"prefix {prefix!r} is reserved for <{_WRITE_PREFIXES[prefix]}>",
                             field="prefixes")
    return [*_WRITE_PREFIXES.items(), *((p, ns) for p, ns in user.items()
                                        if p not in _WRITE_PREFIXES)]


class _Writer:
    """Adds a :class:`GraphData` to an rdflib graph with the write vocabulary."""

    def __init__(self, graph: Graph, compactor: _Compactor) -> None:
        self.graph = graph
        self.compactor = compactor

    def add(self, data: GraphData) -> None:
        for relation in data.relations:
            self._relation(relation)
        for entity in data.entities:
            self._entity(entity)
        for triple in data.triples:
            self.graph.add((self._node(triple.subject), self._predicate(triple.relation),
                            self._node(triple.object)))

    def _node(self, identifier: str) -> Any:
        from rdflib import URIRef

        return URIRef(self.compactor.expand(identifier, entity=True))

    @staticmethod
    def _predicate(name: str) -> Any:
        from rdflib import URIRef

        return URIRef(KGMM_NS + quote(name, safe=""))

    def _relation(self, relation: Relation) -> None:
        from rdflib import Literal, URIRef

        iri = self._predicate(relation.id)
        self.graph.add((iri, URIRef(RDF_TYPE), URIRef(OWL + "ObjectProperty")))
        if relation.label:
            self.graph.add((iri, URIRef(RDFS_LABEL), Literal(relation.label)))
        if relation.inverse:
            self.graph.add((iri, URIRef(OWL_INVERSE_OF), self._predicate(relation.inverse)))

    def _entity(self, entity: Entity) -> None:
        from rdflib import Literal, URIRef

        node = self._node(entity.id)
        self.graph.add((node, URIRef(RDFS_LABEL), Literal(entity.label)))
        for alias in entity.aliases:
            self.graph.add((node, URIRef(SKOS + "altLabel"), Literal(alias)))
        if entity.description:
            self.graph.add((node, URIRef(DCTERMS + "description"), Literal(entity.description)))
        for type_id in entity.types:
            self.graph.add((node, URIRef(RDF_TYPE),
                            URIRef(self.compactor.expand(type_id, entity=False))))
        for key, value in entity.properties.items():
            self.graph.add((node, self._predicate(key), self._value(value)))

    def _value(self, value: PropertyValue) -> Any:
        from rdflib import BNode, Literal, URIRef
        from rdflib.collection import Collection

        if isinstance(value, tuple):
            if not value:
                return URIRef(RDF_NIL)
            head = BNode()
            Collection(self.graph, head, [Literal(str(member)) for member in value])
            return head
        if isinstance(value, bool):
            return Literal(value)
        if isinstance(value, int):
            return Literal(value, datatype=URIRef(XSD + "integer"))
        if isinstance(value, float):
            return Literal(value, datatype=URIRef(XSD + "double"))
        return Literal(value)


def _serialize(graph: Graph, fmt: str, user: Mapping[str, str]) -> str:
    """Serialize; Turtle/N3 declare every given prefix, JSON-LD gets them as its context."""
    if fmt == "json-ld":
        context = {prefix: str(ns) for prefix, ns in graph.namespaces()}
        return graph.serialize(format="json-ld", context=context, auto_compact=True)
    text = graph.serialize(format=fmt)
    if fmt in ("turtle", "n3"):
        missing = [f"@prefix {prefix}: <{namespace}> .\n" for prefix, namespace in user.items()
                   if f"@prefix {prefix}: <{namespace}>" not in text]
        text = "".join(missing) + text
    return text


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling and move it over ``path`` (gzip for ``.gz``)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.suffix.lower() == ".gz":
            with gzip.open(temporary, "wt", encoding="utf-8") as handle:
                handle.write(text)
        else:
            temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)

