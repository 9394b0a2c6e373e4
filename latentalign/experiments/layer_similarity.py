"""Layer-by-layer similarity of sentence encoders on WordNet glosses (Kornblith et al., ICML 2019).

MiniLM-L6 (6 layers, 384-d) and MPNet (12 layers, 768-d) encode the same WordNet glosses with
``encode(layers="all")`` (every hidden state, mean-pooled over the tokens, one forward pass per batch);
:func:`~latentalign.evaluation.similarity_matrix` scores every layer of one model against every layer of
the other and of itself (linear CKA and mutual k-NN). MiniLM-L3 ships only as an ONNX graph with its pooled
sentence embedding, so it enters as one layer (``"output"``) compared with every layer of the other two.

:func:`run_cnns` is the same measurement on the small Fashion-MNIST CNNs of
:mod:`latentalign.experiments.small_cnns` trained from several seeds and at two widths: does linear CKA
match each block of one network with the same block of another (Kornblith et al., Sec. 6.1)?
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from latentalign.experiments.runner import Check, ExperimentResult

__all__ = ["run", "run_cnns", "sample_glosses", "depth_profile"]

logger = logging.getLogger(__name__)

_SHORT = {"minilm": "MiniLM-L6", "mpnet": "MPNet", "minilm-l3-onnx": "MiniLM-L3"}


def sample_glosses(n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` WordNet synsets with distinct glosses (seeded draw): their ids and glosses."""
    from latentalign.datasets import load_wordnet_glosses

    wn = load_wordnet_glosses()
    first: dict[str, int] = {}
    for i, gloss in enumerate(wn.glosses):
        first.setdefault(gloss, i)
    unique = np.array(sorted(first.values()))
    keep = np.sort(np.random.default_rng(seed).permutation(unique)[: min(n, len(unique))])
    return [wn.ids[i] for i in keep], [wn.glosses[i] for i in keep]


def depth_profile(values: np.ndarray) -> list[float]:
    """For each row layer, the relative depth (0 = first, 1 = last) of the column layer it matches best.

    Examples
    --------
    >>> depth_profile(np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.8]]))
    [0.0, 1.0]
    """
    cols = values.shape[1]
    return [float(np.argmax(row)) / max(cols - 1, 1) for row in values]


def _encode(name: str, texts: list[str], batch_size: int, notes: list[str]) -> dict[str, np.ndarray]:
    from latentalign.encoders import load_encoder

    start = time.perf_counter()
    encoder: Any = load_encoder(name)  # BaseEncoder adapters take layers=; the Encoder protocol does not
    states: dict[str, np.ndarray]
    if getattr(encoder, "layer_names", None) is not None and encoder.layer_names():
        states = encoder.encode(texts, layers="all", batch_size=batch_size, progress=False)
    else:
        states = {"output": encoder.encode(texts, batch_size=batch_size, progress=False)}
    notes.append(
        f"encoded {len(texts)} glosses with {name}: {len(states)} layer(s) of width "
        f"{sorted({X.shape[1] for X in states.values()})} in {time.perf_counter() - start:.0f} s (one pass)"
    )
    return states


def run(config: dict[str, Any], *, out_dir: Path) -> ExperimentResult:
    """Encode the glosses with every model's layers, build the layer maps, check the claims."""
    from latentalign.evaluation import similarity_matrix
    from latentalign.experiments.common import restore_threads, set_threads
    from latentalign.reports import plot_layer_similarity

    setup = config["setup"]
    previous = set_threads(setup)
    try:
        notes: list[str] = []
        ids, glosses = sample_glosses(int(setup["n"]), int(setup["seed"]))
        layered, single = list(setup["layered_models"]), list(setup.get("final_only_models", []))
        states = {name: _encode(name, glosses, int(setup["batch_size"]), notes) for name in layered + single}
        k = int(setup["k"])
        pairs = [(a, a) for a in layered] + [(a, b) for i, a in enumerate(layered) for b in layered[i + 1 :] + single]
        pairs += [(s, b) for s in single for b in layered if (b, s) not in pairs]
        rows: list[dict[str, Any]] = []
        plots: list[Path] = []
        tables: dict[tuple[str, str, str], Any] = {}
        for metric in setup["metrics"]:
            for a, b in pairs:
                start = time.perf_counter()
                result = similarity_matrix(
                    states[a],
                    None if a == b else states[b],
                    metric=metric,
                    k=k,
                    name_a=_SHORT.get(a, a),
                    name_b=_SHORT.get(b, b),
                )
                tables[(metric, a, b)] = result
                seconds = time.perf_counter() - start
                for i, layer in enumerate(result.layers_a):
                    row: dict[str, Any] = {"metric": metric, "A": a, "B": b, "A layer": layer}
                    row.update({f"B {name}": float(v) for name, v in zip(result.layers_b, result.values[i])})
                    rows.append(row)
                if len(result.layers_a) > 1 and len(result.layers_b) > 1:
                    path = Path(out_dir) / f"{config['name']}_{metric}_{a}_{b}.png"
                    if plot_layer_similarity(result, path) is not None:
                        plots.append(path)
                notes.append(
                    f"{metric} {a} x {b}: {len(result.layers_a)} x {len(result.layers_b)} layers in {seconds:.1f} s"
                )
        checks = _checks(tables, layered, config["paper"])
        notes += [f"Reading of the results (written after the full run): {n}" for n in config.get("notes", [])]
        # The rows differ in their B columns (each model has its own layers): one row layout per table.
        details = {
            f"{metric}:{a}:{b}": {"layers_a": t.layers_a, "layers_b": t.layers_b, "values": t.values.tolist()}
            for (metric, a, b), t in tables.items()
        }
        return ExperimentResult(rows=_flat_rows(tables), checks=checks, notes=notes, plots=plots, details=details)
    finally:
        if previous is not None:
            restore_threads(previous)


def _flat_rows(tables: dict[tuple[str, str, str], Any]) -> list[dict[str, Any]]:
    """One row per (metric, A layer, B model): the best-matching B layer and its score, first/last B values."""
    rows = []
    for (metric, a, b), t in tables.items():
        for i, layer in enumerate(t.layers_a):
            j = int(np.argmax(t.values[i]))
            rows.append(
                {
                    "metric": metric,
                    "A": _SHORT.get(a, a),
                    "A layer": layer,
                    "B": _SHORT.get(b, b),
                    "best B layer": t.layers_b[j],
                    "best score": round(float(t.values[i, j]), 4),
                    "vs B first": round(float(t.values[i, 0]), 4),
                    "vs B last": round(float(t.values[i, -1]), 4),
                }
            )
    return rows


def _checks(tables: dict[tuple[str, str, str], Any], layered: list[str], paper: dict[str, Any]) -> list[Check]:
    checks = []
    if ("linear_cka", layered[0], layered[0]) in tables:
        # within one model, similarity falls with the distance between layers
        falls = {}
        for name in layered:
            values = tables[("linear_cka", name, name)].values
            adjacent = float(np.mean(np.diag(values, 1)))
            falls[name] = (adjacent, float(values[0, -1]))
        checks.append(
            Check(
                claim="within each model, adjacent layers are more alike (mean CKA) than the first and last layer",
                paper=paper.get("claim_within", ""),
                ours="; ".join(
                    f"{_SHORT.get(n, n)} adjacent {a:.3f} vs first-last {f:.3f}" for n, (a, f) in falls.items()
                ),
                passed=all(a > f for a, f in falls.values()),
            )
        )
    if len(layered) >= 2 and ("linear_cka", layered[0], layered[1]) in tables:
        t = tables[("linear_cka", layered[0], layered[1])]
        profile = depth_profile(t.values)
        monotone = all(b >= a for a, b in zip(profile, profile[1:]))
        checks.append(
            Check(
                claim=f"across models, deeper {_SHORT.get(layered[0])} layers match deeper {_SHORT.get(layered[1])} "
                "layers (best-match relative depth never decreases)",
                paper=paper.get("claim_across", ""),
                ours="best-match depth by layer: " + ", ".join(f"{p:.2f}" for p in profile),
                passed=bool(monotone),
            )
        )
    return checks


def run_cnns(config: dict[str, Any], *, out_dir: Path) -> ExperimentResult:
    """Layer maps between small CNNs of several seeds and widths; check that CKA pairs up equal blocks."""
    from latentalign.encoders import TorchModuleEncoder
    from latentalign.evaluation import similarity_matrix
    from latentalign.experiments.common import restore_threads, set_threads
    from latentalign.experiments.small_cnns import evaluate_accuracy, load_fashion_tensors, train_small_cnn
    from latentalign.reports import plot_layer_similarity

    setup = config["setup"]
    previous = set_threads(setup)
    try:
        notes: list[str] = []
        X, y = load_fashion_tensors("test", int(setup["n_test"]))
        states: dict[str, dict[str, np.ndarray]] = {}
        for width, seed in setup["models"]:
            label = f"w{width:g}-s{seed}"
            start = time.perf_counter()
            model = train_small_cnn(float(width), int(seed), n_train=int(setup["n_train"]), epochs=int(setup["epochs"]))
            encoder = TorchModuleEncoder(model, dim=10, modality="image", name=label)
            states[label] = encoder.encode(X, layers="all", batch_size=500, progress=False)
            notes.append(
                f"{label}: test accuracy {evaluate_accuracy(model, X, y):.3f} on {len(y)} images; layers "
                f"{', '.join(f'{k} ({v.shape[1]}-d)' for k, v in states[label].items())}; "
                f"{time.perf_counter() - start:.0f} s (weights cached after the first run)"
            )
        labels = list(states)
        rows: list[dict[str, Any]] = []
        plots: list[Path] = []
        matched = total = 0
        for i, a in enumerate(labels):
            for b in labels[i + 1 :]:
                result = similarity_matrix(states[a], states[b], name_a=a, name_b=b)
                best = result.best_match()
                # both directions: B's layer for each layer of A (rows), A's layer for each layer of B (columns)
                best_back = {
                    lb: result.layers_a[int(np.argmax(col))] for lb, col in zip(result.layers_b, result.values.T)
                }
                hits = sum(layer == best[layer] for layer in result.layers_a)
                hits += sum(layer == best_back[layer] for layer in result.layers_b)
                matched, total = matched + hits, total + len(result.layers_a) + len(result.layers_b)
                for r, layer in enumerate(result.layers_a):
                    rows.append(
                        {
                            "A": a,
                            "B": b,
                            "A layer": layer,
                            **{f"B {name}": round(float(v), 4) for name, v in zip(result.layers_b, result.values[r])},
                            "best B layer": best[layer],
                        }
                    )
                path = Path(out_dir) / f"{config['name']}_{a}_{b}.png"
                if plot_layer_similarity(result, path) is not None:
                    plots.append(path)
        share = matched / max(total, 1)
        checks = [
            Check(
                claim=f"linear CKA matches each layer with the same layer of the other network in at least "
                f"{float(setup['min_matched']):.0%} of the cases (all pairs of seeds and widths)",
                paper=config["paper"].get("claim_across", ""),
                ours=f"{matched} of {total} layers ({share:.0%})",
                passed=bool(share >= float(setup["min_matched"])),
            )
        ]
        notes += [f"Reading of the results (written after the full run): {n}" for n in config.get("notes", [])]
        return ExperimentResult(rows=rows, checks=checks, notes=notes, plots=plots)
    finally:
        if previous is not None:
            restore_threads(previous)
