"""Refresh the page's bundled Cytoscape.js from the npm registry (run at build time only).

    python -m kgmm.service.vendor            # the version pinned below
    python -m kgmm.service.vendor 3.35.0     # another version

Runs ``npm pack cytoscape@VERSION`` in a temporary directory and copies
``dist/cytoscape.min.js`` and its licence into ``kgmm/service/static/vendor/``, with a
``cytoscape.json`` recording the version and SHA-256. The page never loads anything from a
CDN: the wheel carries the file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CYTOSCAPE_VERSION = "3.35.0"
VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"


def refresh_cytoscape(version: str = CYTOSCAPE_VERSION, target: Path = VENDOR_DIR) -> Path:
    """Fetch ``cytoscape@version`` with npm and copy its minified build into ``target``."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH (Debian: apt-get install npm)")
    with tempfile.TemporaryDirectory(prefix="kgmm-vendor-") as tmp:
        out = subprocess.run([npm, "pack", f"cytoscape@{version}", "--silent"], cwd=tmp,
                             check=True, capture_output=True, text=True).stdout.strip()
        tarball = Path(tmp) / out.splitlines()[-1]
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
        package = Path(tmp) / "package"
        meta = json.loads((package / "package.json").read_text(encoding="utf-8"))
        target.mkdir(parents=True, exist_ok=True)
        script = target / "cytoscape.min.js"
        shutil.copyfile(package / "dist" / "cytoscape.min.js", script)
        licence = next((p for p in package.iterdir() if p.name.upper().startswith("LICENSE")),
                       None)
        if licence is not None:
            shutil.copyfile(licence, target / "cytoscape.LICENSE")
        record = {"package": "cytoscape", "version": meta["version"],
                  "license": meta.get("license"), "file": script.name,
                  "sha256": hashlib.sha256(script.read_bytes()).hexdigest()}
        (target / "cytoscape.json").write_text(json.dumps(record, indent=1) + "\n",
                                               encoding="utf-8")
    return script


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = refresh_cytoscape(args[0] if args else CYTOSCAPE_VERSION)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
