"""
A universal space for N models
===============================

Four models embed the same Tux Paint stamps: MiniLM and MPNet read the English captions, multilingual e5
reads the French ones, and EfficientNet-Lite0 looks at the images. One shared space, fitted by
generalised Procrustes analysis on the training stamps (every model embedded them; the dimensions differ),
translates any model's embeddings into any other's through it: ``N`` maps instead of ``N (N - 1)``.

For every ordered pair of models, each held-out stamp translated from the first model looks for its own
embedding in the second model's space (recall@1).
"""

# %%
# Embed the stamps with four models
# ---------------------------------
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA

from latentalign import UniversalSpace
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
inputs = {
    "tuxpaint/en": [tux.captions["en"][i] for i in rows],
    "tuxpaint/fr": [tux.captions["fr"][i] for i in rows],
    "tuxpaint/png": [load_rgb(tux.image_paths[i]) for i in rows],
}
models = {
    "MiniLM (en)": ("minilm", "tuxpaint/en"),
    "MPNet (en)": ("mpnet", "tuxpaint/en"),
    "e5 (fr)": ("e5-small", "tuxpaint/fr"),
    "EffNet-L0 (image)": ("efficientnet-lite0", "tuxpaint/png"),
}
spaces = {}
for label, (model, dataset) in models.items():
    store = embed(load_encoder(model), inputs[dataset], ids, dataset=dataset, progress=False)
    spaces[label] = np.asarray(store.get(ids), dtype=np.float32)
keep = distinct_rows(*spaces.values())
spaces = {label: Z[keep] for label, Z in spaces.items()}
for label, Z in spaces.items():
    print(f"{label:>18}: {Z.shape[0]} stamps x {Z.shape[1]} dimensions")

# %%
# Fit the shared space on 70 % of the stamps
# ------------------------------------------
# Generalised Procrustes analysis works in the widest model's dimension (the others are zero-padded), and
# with a few hundred stamps only a few hundred directions carry anything. Each model is first reduced to
# its 100 main directions (a PCA fitted on its training rows), which keeps the fit to a fraction of a
# second.
order = np.random.default_rng(0).permutation(len(keep))
cut = int(0.7 * len(keep))
train, test = np.sort(order[:cut]), np.sort(order[cut:])
for label, Z in spaces.items():
    pca = PCA(n_components=min(100, cut - 1), random_state=0).fit(Z[train])
    spaces[label] = pca.transform(Z).astype(np.float32)
space = UniversalSpace().fit({label: Z[train] for label, Z in spaces.items()})
print(f"shared space: {space.dim_} dimensions for {len(space.names_)} models")

# %%
# Translate between every pair of models
# --------------------------------------
labels = list(spaces)
recall = np.full((len(labels), len(labels)), np.nan)
for i, src in enumerate(labels):
    for j, dst in enumerate(labels):
        if i != j:
            translated = space.translate(spaces[src][test], src, dst)
            recall[i, j] = retrieval_scores(translated, spaces[dst][test], k=(1,))["recall@1"]
print(f"chance recall@1: {1 / len(test):.4f}")

fig, ax = plt.subplots(figsize=(6, 5))
image = ax.imshow(recall, vmin=0, vmax=1, cmap="viridis")
for i in range(len(labels)):
    for j in range(len(labels)):
        if i != j:
            ax.text(
                j, i, f"{recall[i, j]:.2f}", ha="center", va="center", color="white" if recall[i, j] < 0.6 else "black"
            )
ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
ax.set_yticks(range(len(labels)), labels)
ax.set_xlabel("to (keys)")
ax.set_ylabel("from (queries)")
ax.set_title(f"recall@1 through the universal space, {len(test)} held-out stamps")
fig.colorbar(image, ax=ax, fraction=0.046)
fig.tight_layout()
plt.show()
