"""Tux Paint stamps: clip-art images, each captioned in English and up to ~77 other languages.

Source: the Debian package ``tuxpaint-stamps-default`` (only its ``.png``, ``.svg`` and ``.txt``
files are kept: 36 MB of 218 MB). A stamp ``dir/name`` is ``dir/name.png`` and/or ``dir/name.svg``
with a caption file ``dir/name.txt`` whose first line is the English caption and whose other lines
read ``<lang>.utf8=<caption>`` (``fr``, ``pt_BR``, ``ca@valencia``, ``en_GB``, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentalign._optional import import_optional
from latentalign.datasets._fetch import ensure

__all__ = ["TuxPaintStamps", "load_tuxpaint", "parse_caption_file", "load_rgb"]

_LINE = re.compile(r"^(?P<lang>[A-Za-z]{2,3}(?:_[A-Z]{2})?(?:@[a-z]+)?)\.utf8=(?P<text>.*)$")
_FORMATS = ("png", "svg", "any")


@dataclass(frozen=True, eq=False)
class TuxPaintStamps:
    """Image/caption pairs, with parallel captions across languages.

    Attributes
    ----------
    ids : list of str
        Stamp path relative to the stamps root, without extension (``"animals/birds/owl"``).
    image_paths : list of Path
        The image file of each stamp (``.png`` or ``.svg``).
    captions : dict of str to list of (str or None)
        For each requested language, one caption per stamp (None only with ``missing="none"``).
    categories : list of str
        The stamp's folder relative to the stamps root (``"animals/birds"``); the top-level
        category is ``category.split("/")[0]``.
    languages : tuple of str
        The requested languages, keys of ``captions``.
    """

    ids: list[str]
    image_paths: list[Path]
    captions: dict[str, list[str | None]]
    categories: list[str]
    languages: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)


def parse_caption_file(path: str | Path) -> dict[str, str]:
    """Captions of one stamp ``.txt`` file, keyed by language (``"en"`` is the first line).

    Empty captions are left out; lines that are not ``<lang>.utf8=<text>`` are ignored.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    captions: dict[str, str] = {}
    if lines and lines[0].strip() and not _LINE.match(lines[0]):
        captions["en"] = lines[0].strip()
    for line in lines[1:]:
        match = _LINE.match(line)
        if match and match["text"].strip():
            captions.setdefault(match["lang"], match["text"].strip())
    return captions


def load_tuxpaint(
    languages: tuple[str, ...] | list[str] = ("en",),
    image_format: str = "png",
    *,
    missing: str = "drop",
    download: bool = True,
) -> TuxPaintStamps:
    """Load the Tux Paint stamps that have an image and a caption file.

    Parameters
    ----------
    languages : sequence of str, default ("en",)
        Caption languages to return, as written in the caption files (``"en"``, ``"fr"``, ``"de"``,
        ``"pt_BR"``, ...).
    image_format : {"png", "svg", "any"}, default "png"
        Keep stamps that have this image format; ``"any"`` prefers the PNG and falls back to SVG.
    missing : {"drop", "none"}, default "drop"
        Stamps lacking a caption in one of ``languages``: dropped, or kept with None.
    download : bool, default True
        Fetch the Debian package when the files are missing.

    Returns
    -------
    TuxPaintStamps
        Sorted by id.
    """
    languages = (languages,) if isinstance(languages, str) else tuple(languages)
    if not languages:
        raise ValueError("languages must name at least one language, e.g. ('en', 'fr'); got ().")
    if image_format not in _FORMATS:
        raise ValueError(f"image_format must be one of {_FORMATS}, got {image_format!r}.")
    if missing not in ("drop", "none"):
        raise ValueError(f"missing must be 'drop' or 'none', got {missing!r}.")
    root = ensure("tuxpaint", download=download)
    suffixes = (".png", ".svg") if image_format == "any" else (f".{image_format}",)
    ids, paths, categories = [], [], []
    captions: dict[str, list[str | None]] = {lang: [] for lang in languages}
    for txt in sorted(root.rglob("*.txt")):
        image = next((txt.with_suffix(s) for s in suffixes if txt.with_suffix(s).is_file()), None)
        if image is None:
            continue
        found = parse_caption_file(txt)
        if missing == "drop" and any(lang not in found for lang in languages):
            continue
        rel = txt.relative_to(root).with_suffix("")
        ids.append(rel.as_posix())
        paths.append(image)
        categories.append(rel.parent.as_posix())
        for lang in languages:
            captions[lang].append(found.get(lang))
    return TuxPaintStamps(ids, paths, captions, categories, languages)


def load_rgb(
    path: str | Path, *, size: int | None = None, background: tuple[int, int, int] = (255, 255, 255)
) -> np.ndarray:
    """Load a raster stamp as an RGB uint8 array, compositing transparency onto ``background``.

    Parameters
    ----------
    path : str or Path
        A ``.png`` (or other pillow-readable raster) file. SVG files are not rasterised.
    size : int, optional
        Resize (bicubic) to ``size x size`` pixels; the aspect ratio is not kept.
    background : tuple of 3 int, default white

    Returns
    -------
    ndarray of shape (h, w, 3), uint8
    """
    path = Path(path)
    if path.suffix.lower() == ".svg":
        raise ValueError(
            f"load_rgb reads raster images; {path.name} is an SVG. Load the stamps with "
            "image_format='png', or rasterise the SVG first (e.g. with cairosvg)."
        )
    image_mod = import_optional("PIL.Image", "data", purpose="reading stamp images")
    with image_mod.open(path) as img:
        rgba = img.convert("RGBA")
    canvas = image_mod.new("RGBA", rgba.size, (*background, 255))
    rgb = image_mod.alpha_composite(canvas, rgba).convert("RGB")
    if size is not None:
        rgb = rgb.resize((size, size), image_mod.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)
