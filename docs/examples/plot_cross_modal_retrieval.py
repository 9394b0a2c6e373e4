"""
Cross-modal retrieval with unimodal encoders
============================================

An image encoder (EfficientNet-Lite0, trained on ImageNet labels) and a text encoder (MiniLM, trained on
sentence pairs) never saw each other's modality. Given a few hundred images paired with their captions,
a map from the image space to the caption space lets a held-out image retrieve its own caption among all
held-out captions.

The pairs are the Tux Paint stamps: clip-art images, each with an English caption.
"""

# %%
# Embed the images and their captions
# -----------------------------------
import os

import matplotlib.pyplot as plt
import numpy as np

from latentalign import Affine, Procrustes, RelativeProjection
from latentalign.anchors import distinct_rows
from latentalign.datasets import load_rgb, load_tuxpaint
from latentalign.encoders import load_encoder
from latentalign.evaluation import retrieval_scores
from latentalign.experiments.common import unique_caption_rows
from latentalign.store import embed

REDUCED = os.environ.get("LATENTALIGN_DOCS_REDUCED", "0") not in ("", "0")

tux = load_tuxpaint(languages=("en", "fr"))
rows = unique_caption_rows(tux.captions["en"], tux.captions["fr"])
if REDUCED:  # the 240 stamps `latentalign demo --quick` embeds
    rows = np.sort(np.random.default_rng(0).permutation(rows)[:240])
ids = [tux.ids[i] for i in rows]
captions = [tux.captions["en"][i] for i in rows]
images = [load_rgb(tux.image_paths[i]) for i in rows]

image_store = embed(load_encoder("efficientnet-lite0"), images, ids, dataset="tuxpaint/png", progress=False)
text_store = embed(load_encoder("minilm"), captions, ids, dataset="tuxpaint/en", progress=False)
X = np.asarray(image_store.get(ids), dtype=np.float32)
Y = np.asarray(text_store.get(ids), dtype=np.float32)
keep = distinct_rows(X, Y)
X, Y, captions = X[keep], Y[keep], [captions[i] for i in keep]
print(f"{len(X)} image-caption pairs: images {X.shape[1]}-d, captions {Y.shape[1]}-d")

# %%
# Fit on 70 % of the pairs, retrieve captions for the other images
# ----------------------------------------------------------------
# The image space has more dimensions (1280) than there are pairs, so the affine map needs its ridge
# penalty, and the relative representation (cosine similarities to the training pairs, sparsified to the
# closest anchors as in ASIF) compares both sides in anchor coordinates.
order = np.random.default_rng(0).permutation(len(X))
cut = int(0.7 * len(X))
train, test = np.sort(order[:cut]), np.sort(order[cut:])

aligners = {
    "procrustes": Procrustes(),
    "affine": Affine(alpha=10.0),
    "relative (top 50)": RelativeProjection(metric="cosine", top_k=50),
}
ks = (1, 5, 10)
curves = {}
for name, aligner in aligners.items():
    aligner.fit(X[train], Y[train])
    queries, keys = aligner.transform(X[test]), aligner.transform_target(Y[test])
    scores = retrieval_scores(queries, keys, k=ks)
    curves[name] = [scores[f"recall@{k}"] for k in ks]
    print(f"{name:>17}: " + "  ".join(f"recall@{k} {v:.3f}" for k, v in zip(ks, curves[name])))

# %%
# What an image retrieves
# -----------------------
# The three captions closest to the first held-out images, under the affine map.
aligner = aligners["affine"]
queries, keys = aligner.transform(X[test]), Y[test]
similarity = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
    keys / np.linalg.norm(keys, axis=1, keepdims=True)
).T
for i in range(3):
    best = np.argsort(-similarity[i])[:3]
    print(f"image of {captions[test[i]]!r} -> " + " | ".join(captions[test[j]] for j in best))

# %%
# Recall@k for each map
# ---------------------
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, values in curves.items():
    ax.plot(ks, values, marker="o", label=name)
ax.plot(ks, [k / len(test) for k in ks], color="grey", linestyle=":", label="chance")
ax.set_xticks(ks)
ax.set_xlabel("k")
ax.set_ylabel("recall@k")
ax.set_ylim(0, 1)
ax.set_title(f"EfficientNet-Lite0 image -> MiniLM caption, {len(test)} held-out pairs")
ax.legend()
fig.tight_layout()
plt.show()
