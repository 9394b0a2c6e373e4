"""
Align two text encoders: MiniLM to MPNet
========================================

Two sentence encoders trained separately embed the same captions: MiniLM (384 dimensions) and MPNet
(768 dimensions). Fit a map from MiniLM's space to MPNet's on paired captions, then ask whether each
held-out caption, mapped from MiniLM, finds its own MPNet embedding among all held-out ones (recall@1).

The captions are those of the Tux Paint stamps (clip-art images captioned in many languages), loaded from
the local cache.
"""

# %%
# Load the captions and embed them with both models
# -------------------------------------------------
# ``embed`` caches each model's embeddings in the embedding store, keyed by the model, the ids and the
# inputs: a second run reads them back instead of encoding again. Several stamps share a caption ("A
# flower."); with two identical keys retrieval has no single right answer, so only the first stamp of
# each caption is kept.
import os

import matplotlib.pyplot as plt
import numpy as np

from latentalign import Affine, Procrustes, RelativeProjection
from latentalign.anchors import distinct_rows
from latentalign.datasets import load_tuxpaint
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


def embeddings(model: str) -> np.ndarray:
    store = embed(load_encoder(model), captions, ids, dataset="tuxpaint/en", progress=False)
    return np.asarray(store.get(ids), dtype=np.float32)


X, Y = embeddings("minilm"), embeddings("mpnet")
keep = distinct_rows(X, Y)
X, Y = X[keep], Y[keep]
print(f"{len(X)} captions: MiniLM {X.shape[1]}-d, MPNet {Y.shape[1]}-d")

# %%
# Fit three maps on 70 % of the pairs
# -----------------------------------
# Procrustes (orthogonal, here semi-orthogonal since the dimensions differ), an affine map with a ridge
# penalty, and relative representations (each side described by its cosine similarities to the training
# anchors: no map is fitted, both sides land in the same anchor coordinates). With fewer training pairs
# than MiniLM has dimensions (the reduced run), Procrustes warns that the pairs fix the rotation only on
# their span.
order = np.random.default_rng(0).permutation(len(X))
cut = int(0.7 * len(X))
train, test = np.sort(order[:cut]), np.sort(order[cut:])

aligners = {
    "procrustes": Procrustes(),
    "affine": Affine(alpha=1.0),
    "relative": RelativeProjection(metric="cosine"),
}
scores = {}
for name, aligner in aligners.items():
    aligner.fit(X[train], Y[train])
    queries, keys = aligner.transform(X[test]), aligner.transform_target(Y[test])
    scores[name] = retrieval_scores(queries, keys, k=(1, 5))
    print(f"{name:>10}: recall@1 {scores[name]['recall@1']:.3f}  recall@5 {scores[name]['recall@5']:.3f}")
print(f"chance recall@1: {1 / len(test):.4f}")

# %%
# Plot recall@1 and recall@5
# --------------------------
fig, ax = plt.subplots(figsize=(6, 3.5))
names = list(scores)
width = 0.38
positions = np.arange(len(names))
for shift, k in ((-width / 2, 1), (width / 2, 5)):
    ax.bar(positions + shift, [scores[n][f"recall@{k}"] for n in names], width, label=f"recall@{k}")
ax.axhline(1 / len(test), color="grey", linestyle=":", label="chance recall@1")
ax.set_xticks(positions, names)
ax.set_ylim(0, 1.05)
ax.set_ylabel("held-out captions")
ax.set_title(f"MiniLM -> MPNet, {len(test)} held-out Tux Paint captions")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()
