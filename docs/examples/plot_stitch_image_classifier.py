"""
Zero-shot stitching of an image classifier
==========================================

A classifier head trained on EfficientNet-Lite1 embeddings of Fashion-MNIST is fed EfficientNet-Lite0
embeddings, mapped into Lite1's space. Nothing is retrained: the map is fitted on a few hundred images
both encoders embedded (the anchors), and the head is Lite1's own.

Both encoders output 1280 dimensions, so the head can also be fed Lite0's embeddings as they are (the
"absolute" baseline): same size, but a different space.
"""

# %%
# Embed the same images with both encoders
# ----------------------------------------
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from latentalign import Affine, Procrustes
from latentalign.anchors import distinct_rows
from latentalign.datasets import load_fashion_mnist
from latentalign.encoders import load_encoder
from latentalign.stitching import Stitcher
from latentalign.store import embed

REDUCED = os.environ.get("LATENTALIGN_DOCS_REDUCED", "0") not in ("", "0")
# the sizes of `latentalign demo --quick` and of `latentalign demo`: their embeddings are shared
N_TRAIN, N_TEST, N_ANCHORS = (300, 200, 150) if REDUCED else (1000, 500, 500)

fm_train, fm_test = load_fashion_mnist("train"), load_fashion_mnist("test")
rng = np.random.default_rng(0)
tr = np.sort(rng.choice(len(fm_train.ids), N_TRAIN, replace=False))
te = np.sort(rng.choice(len(fm_test.ids), N_TEST, replace=False))


def embeddings(model: str, data, rows: np.ndarray, split: str) -> np.ndarray:
    ids = [data.ids[i] for i in rows]
    store = embed(load_encoder(model), data.images[rows], ids, dataset=f"fashion_mnist/{split}", progress=False)
    return np.asarray(store.get(ids), dtype=np.float32)


a_train = embeddings("efficientnet-lite0", fm_train, tr, "train")
b_train = embeddings("efficientnet-lite1", fm_train, tr, "train")
a_test = embeddings("efficientnet-lite0", fm_test, te, "test")
b_test = embeddings("efficientnet-lite1", fm_test, te, "test")
y_train, y_test = fm_train.labels[tr], fm_test.labels[te]

# %%
# Train model B's head, fit the maps on anchors
# ---------------------------------------------
# Fashion-MNIST repeats a few images; anchors must be distinct rows in both spaces.
head_b = LogisticRegression(max_iter=2000).fit(b_train, y_train)
anchors = np.sort(rng.choice(distinct_rows(a_train, b_train), N_ANCHORS, replace=False))

maps = {
    "absolute (no map)": None,
    "procrustes": Procrustes().fit(a_train[anchors], b_train[anchors]),
    "affine": Affine(alpha=1.0).fit(a_train[anchors], b_train[anchors]),
}

# %%
# Stitch and score
# ----------------
# :class:`~latentalign.stitching.Stitcher` composes model A's encoder (``None``: we feed A's embeddings),
# the map and B's head into one ``torch.nn.Module``; the head may be a scikit-learn classifier.
native = float((head_b.predict(b_test) == y_test).mean())
accuracy = {"native (B on B)": native}
for name, aligner in maps.items():
    stitched = Stitcher(None, aligner, head_b)
    with torch.no_grad():
        predicted = stitched(torch.from_numpy(a_test)).argmax(dim=1).numpy()
    accuracy[name] = float((predicted == y_test).mean())
for name, value in accuracy.items():
    print(f"{name:>18}: accuracy {value:.3f}")

# %%
# Plot
# ----
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(list(accuracy), list(accuracy.values()), color=["grey", "tab:red", "tab:blue", "tab:green"])
ax.axhline(0.1, color="black", linestyle=":", label="chance (10 classes)")
ax.set_ylim(0, 1)
ax.set_ylabel("accuracy")
ax.set_title(f"EfficientNet-Lite0 -> Lite1's head, {N_ANCHORS} anchors, {N_TEST} test images")
ax.legend(loc="upper right")
fig.tight_layout()
plt.show()
