"""Encoder overhead and embedding-cache speed-up.

1. Overhead of ``Encoder.encode`` (batching, eval/inference_mode, checks, float32 copy) against a bare
   loop that does the same work (same model, same batch size, same preprocessing/tokenisation and pooling).
   Target: <= 5 %.
2. ``store.embed``: first run (encode + write shards) against the second call with the same arguments
   (a cache hit: metadata + key + manifest + file-size checks). Target: >= 50x.

Timings are the minimum over interleaved repeats (the machine is shared). Run:

    .venv/bin/python benchmarks/bench_encoders.py            # offline models if installed, else MLP only
    .venv/bin/python benchmarks/bench_encoders.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentalign.encoders import TorchModuleEncoder, load_encoder  # noqa: E402
from latentalign.encoders._pooling import pool_tokens  # noqa: E402
from latentalign.exceptions import MissingDependencyError  # noqa: E402

TEXTS = [
    f"{a} {b} {c}."
    for a in ("A man", "The cat", "Two children", "An old woman", "The red car", "A small dog", "The committee")
    for b in ("is playing", "quickly crossed", "was looking at", "never liked", "painted")
    for c in (
        "the guitar",
        "a busy street in the rain",
        "the mountains behind the village",
        "the new report",
        "an empty house at the end of the road",
        "the sea",
        "a bowl of soup",
        "the stars",
    )
]


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def paired(
    bare: Callable[[], object], wrapped: Callable[[], object], repeats: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Interleave the two so drifting machine load hits both alike; return the minimum wall and CPU time
    of each. With one torch thread, CPU time is the work done, little affected by other processes."""
    bare(), wrapped()  # warm-up
    tb, tw = [], []
    for _ in range(repeats):
        tb.append(timed(bare))
        tw.append(timed(wrapped))
    return (min(t[0] for t in tb), min(t[1] for t in tb)), (min(t[0] for t in tw), min(t[1] for t in tw))


# ---------------------------------------------------------------------------------------- overhead cases
def case_mlp(n: int, bs: int):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(768, 768), torch.nn.GELU(), torch.nn.Linear(768, 384)).eval()
    X = np.random.default_rng(0).standard_normal((n, 768)).astype(np.float32)
    enc = TorchModuleEncoder(net, dim=384)

    def bare():
        out = []
        with torch.inference_mode():
            for i in range(0, n, bs):
                out.append(net(torch.from_numpy(X[i : i + bs])).numpy())
        return np.concatenate(out)

    return f"MLP 768-768-384 (n={n})", bare, lambda: enc.encode(X, batch_size=bs, progress=False)


def case_hf_minilm(n: int, bs: int):
    import transformers

    from latentalign.encoders import HFEncoder
    from latentalign.encoders.registry import _minilm_dir

    path = _minilm_dir()
    tok = transformers.AutoTokenizer.from_pretrained(str(path))
    model = transformers.AutoModel.from_pretrained(str(path)).eval()
    enc = HFEncoder(model, tok, pooling="mean", max_length=256)
    texts = (TEXTS * (n // len(TEXTS) + 1))[:n]

    def bare():
        out = []
        with torch.inference_mode():
            for i in range(0, n, bs):
                b = tok(texts[i : i + bs], padding=True, truncation=True, max_length=256, return_tensors="pt")
                h = model(**b).last_hidden_state
                out.append(pool_tokens(h, b["attention_mask"], "mean").numpy())
        return np.concatenate(out)

    return f"HF MiniLM-L6 mean-pool (n={n})", bare, lambda: enc.encode(texts, batch_size=bs, progress=False)


def case_st_minilm(n: int, bs: int):
    enc = load_encoder("minilm")
    model = enc.model  # type: ignore[attr-defined]
    texts = (TEXTS * (n // len(TEXTS) + 1))[:n]

    def bare():
        out = []
        for i in range(0, n, bs):
            out.append(model.encode(texts[i : i + bs], batch_size=bs, show_progress_bar=False, convert_to_numpy=True))
        return np.concatenate(out)

    return f"sentence-transformers MiniLM (n={n})", bare, lambda: enc.encode(texts, batch_size=bs, progress=False)


def case_onnx_int8(n: int, bs: int):
    enc = load_encoder("minilm-int8-onnx")
    sess, tok = enc.session, enc.tokenizer  # type: ignore[attr-defined]
    texts = (TEXTS * (n // len(TEXTS) + 1))[:n]

    def bare():
        out = []
        for i in range(0, n, bs):
            e = tok.encode_batch(texts[i : i + bs])
            ids = np.asarray([x.ids for x in e], dtype=np.int64)
            mask = np.asarray([x.attention_mask for x in e], dtype=np.int64)
            h = sess.run(
                ["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            m = mask[..., None].astype(np.float32)
            out.append((h * m).sum(1) / m.sum(1))
        return np.concatenate(out)

    return f"ONNX MiniLM int8 (n={n})", bare, lambda: enc.encode(texts, batch_size=bs, progress=False)


def case_effnet(n: int, bs: int):
    enc = load_encoder("efficientnet-lite0")
    model, pre = enc.model, enc.preprocess  # type: ignore[attr-defined]
    imgs = np.random.default_rng(0).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)  # Fashion-MNIST-sized

    def bare():
        out = []
        with torch.inference_mode():
            for i in range(0, n, bs):
                out.append(model.extract_features(pre(imgs[i : i + bs])).mean((2, 3)).numpy())
        return np.concatenate(out)

    return (
        f"EfficientNet-Lite0, 28x28 gray -> 224 RGB (n={n})",
        bare,
        lambda: enc.encode(imgs, batch_size=bs, progress=False),
    )


# ---------------------------------------------------------------------------------------- cache
def bench_cache(name: str, n: int, bs: int) -> tuple[str, float, float, float]:
    from latentalign.store import embed

    enc = load_encoder(name)
    texts = (TEXTS * (n // len(TEXTS) + 1))[:n]
    ids = [f"t{i}" for i in range(n)]
    with tempfile.TemporaryDirectory() as home:
        os.environ["LATENTALIGN_HOME"] = home
        t0 = time.perf_counter()
        store = embed(enc, texts, ids, dataset="bench", batch_size=bs, shard_size=128, progress=False)
        first = time.perf_counter() - t0
        hit = best_of(lambda: embed(enc, texts, ids, dataset="bench", batch_size=bs, shard_size=128, progress=False), 5)
        read = best_of(lambda: store.to_numpy(), 5)
    return f"embed {name} (n={n}, {store.n_shards} shards)", first, hit, read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer items and repeats")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: stable timings)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reps = 3 if args.quick else 7
    n_txt = 64 if args.quick else 192
    n_img = 16 if args.quick else 48
    bs = args.batch_size
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch_size={bs}, min of {reps} interleaved runs\n"
    )

    cases = [
        (case_mlp, 2048 if args.quick else 8192),
        (case_hf_minilm, n_txt),
        (case_st_minilm, n_txt),
        (case_onnx_int8, n_txt),
        (case_effnet, n_img),
    ]
    rows = []
    for make, n in cases:
        try:
            label, bare, wrapped = make(n, bs)
        except (MissingDependencyError, ImportError) as exc:
            print(f"skipped {make.__name__}: {exc}")
            continue
        tb, tw = paired(bare, wrapped, reps)
        rows.append((label, tb, tw))

    print(
        f"{'encode overhead vs a bare model(batch) loop':<52}{'bare wall':>10}{'encode wall':>12}{'ratio':>7}"
        f"{'bare cpu':>10}{'encode cpu':>11}{'ratio':>7}  target <= 1.05"
    )
    for label, (bw, bc), (ew, ec) in rows:
        print(f"{label:<52}{bw:>10.3f}{ew:>12.3f}{ew / bw:>7.3f}{bc:>10.3f}{ec:>11.3f}{ec / bc:>7.3f}")

    print()
    print(f"{'embedding cache':<52}{'1st run s':>10}{'hit s':>9}{'speed-up':>10}{'read s':>9}  target >= 50x")
    for name in ("minilm",):
        try:
            label, first, hit, read = bench_cache(name, n_txt, bs)
        except (MissingDependencyError, ImportError) as exc:
            print(f"skipped cache bench: {exc}")
            continue
        print(f"{label:<52}{first:>10.3f}{hit:>9.4f}{first / hit:>9.0f}x{read:>9.4f}")


if __name__ == "__main__":
    main()
