"""
How many pairs does a map need?
===============================

The anchor-budget curve: recall@1 of held-out MiniLM -> MPNet captions against the number of known
pairs the map is fitted on, for several aligners. Procrustes, the affine map and relative representations
use the known pairs only. In the full build, :class:`~latentalign.OTAligner` and
:class:`~latentalign.align.LatentFunctionalMap` also see the other training captions of both models,
unpaired: OT matches them by self-learning from the known pairs (its default route with at least 4
pairs), the functional map through the kNN graphs of both spaces. They take seconds per fit, so the
reduced build (``LATENTALIGN_DOCS_REDUCED=1``) leaves them out.

``latentalign diagnose`` (and :func:`latentalign.evaluation.alignability_report`) draws the same kind of
curve for any two embedding files.
"""

# %%
# Embed the captions with both models
# -----------------------------------
import os

import matplotlib.pyplot as plt
import numpy as np

from latentalign import Affine, OTAligner, Procrustes, RelativeProjection
from latentalign.align import LatentFunctionalMap
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

# %%
# Fit each aligner on a growing number of pairs
# ---------------------------------------------
# The budgets are nested: the first ``b`` rows of one random order of the training captions. Procrustes
# and the affine map warn when the pairs are fewer than the dimensions (the maps are then fixed only on
# the span of the pairs); the warnings are silenced here, the curve shows what that costs.
import warnings  # noqa: E402

order = np.random.default_rng(0).permutation(len(X))
cut = int(0.7 * len(X))
train, test = order[:cut], np.sort(order[cut:])
budgets = [10, 50, cut] if REDUCED else [5, 10, 25, 50, 100, 200, cut]


def make(name: str):
    return {
        "procrustes": Procrustes(),
        "affine (ridge)": Affine(alpha=1.0),
        "relative": RelativeProjection(metric="cosine"),
        "ot (+ unpaired rows)": OTAligner(),
        "lfm (+ unpaired rows)": LatentFunctionalMap(),
    }[name]


names = ["procrustes", "affine (ridge)", "relative"]
if not REDUCED:
    names += ["ot (+ unpaired rows)", "lfm (+ unpaired rows)"]
curves: dict[str, list[float]] = {name: [] for name in names}
for budget in budgets:
    for name in names:
        aligner = make(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if "unpaired" in name:
                # every training caption of both models, paired only on the first `budget` rows
                known = np.arange(budget)
                aligner.fit(X[train], Y[train], pairs=np.stack([known, known], axis=1))
            else:
                aligner.fit(X[train[:budget]], Y[train[:budget]])
        queries, keys = aligner.transform(X[test]), aligner.transform_target(Y[test])
        curves[name].append(retrieval_scores(queries, keys, k=(1,))["recall@1"])
    print(f"{budget:>4} pairs: " + "  ".join(f"{n} {curves[n][-1]:.3f}" for n in names))

# %%
# The curve
# ---------
fig, ax = plt.subplots(figsize=(6.5, 4))
for name, values in curves.items():
    ax.plot(budgets, values, marker="o", label=name)
ax.axhline(1 / len(test), color="grey", linestyle=":", label="chance")
ax.set_xscale("log")
ax.set_xticks(budgets, [str(b) for b in budgets])
ax.set_xlabel("known pairs")
ax.set_ylabel("recall@1")
ax.set_ylim(0, 1.02)
ax.set_title(f"MiniLM -> MPNet, {len(test)} held-out Tux Paint captions")
ax.legend(loc="lower right", fontsize="small")
fig.tight_layout()
plt.show()
