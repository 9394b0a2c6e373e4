"""encode(layers=...): every hidden layer from one forward pass, on tiny models built here.

Each layered output is compared with an independent reference: the single-layer encoder (``HFEncoder(layer=i)``),
the library's own forward pass, or the module run by hand.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from latentalign.encoders import TorchModuleEncoder

WORDS = "[PAD] [UNK] [CLS] [SEP] the a cat dog sat on mat ran fast slow red blue car house big small".split()
SENTENCES = ["the cat sat on the mat", "a dog ran", "the big red car", "small blue house", "the cat ran fast"]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT (random weights, seed 0) with a word-level tokenizer, saved to disk."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
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
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    out = tmp_path_factory.mktemp("bert")
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_bert(tiny_bert_dir):
    """The tiny BERT and its tokenizer, loaded once."""
    transformers = pytest.importorskip("transformers")
    return (
        transformers.AutoModel.from_pretrained(str(tiny_bert_dir)),
        transformers.AutoTokenizer.from_pretrained(str(tiny_bert_dir)),
    )


class CountCalls:
    """Counts the forward calls of a module (a forward pre-hook)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        self.handle = module.register_forward_pre_hook(self)

    def __call__(self, *_: object) -> None:
        self.calls += 1


# ------------------------------------------------------------------------------------------ Hugging Face
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_hf_layers_match_single_layer_encoders_in_one_pass_per_batch(tiny_bert, pooling):
    from latentalign.encoders import HFEncoder

    enc = HFEncoder(*tiny_bert, pooling=pooling)
    assert enc.layer_names() == ["embeddings", "layer.0", "layer.1"]
    counter = CountCalls(enc.model)
    states = enc.encode(SENTENCES, batch_size=2, layers="all", progress=False)
    assert counter.calls == 3  # 5 sentences in batches of 2: one forward pass per batch
    assert list(states) == ["embeddings", "layer.0", "layer.1"]
    for i, name in enumerate(states):
        ref = HFEncoder(*tiny_bert, pooling=pooling, layer=i).encode(SENTENCES, batch_size=2, progress=False)
        assert states[name].dtype == np.float32 and states[name].shape == (5, 32)
        np.testing.assert_allclose(states[name], ref, atol=1e-6, rtol=0)
    # the default call is unchanged: one array, the last layer
    final = enc.encode(SENTENCES, progress=False)
    assert isinstance(final, np.ndarray)
    np.testing.assert_allclose(final, states["layer.1"], atol=1e-6, rtol=0)


def test_layer_selection_by_index_name_and_order(tiny_bert):
    from latentalign.encoders import HFEncoder

    enc = HFEncoder(*tiny_bert)
    assert enc.resolve_layers([-1, 0, "layer.0", "embeddings"]) == ["layer.1", "embeddings", "layer.0"]
    assert enc.resolve_layers("layer.0") == ["layer.0"]
    states = enc.encode(SENTENCES, layers=[-1, "embeddings"], normalize=True, progress=False)
    assert list(states) == ["layer.1", "embeddings"]
    np.testing.assert_allclose(np.linalg.norm(states["layer.1"], axis=1), 1.0, atol=1e-6)


def test_layer_errors_list_the_available_layers(tiny_bert):
    from latentalign.encoders import ArrayEncoder, HFEncoder

    enc = HFEncoder(*tiny_bert)
    with pytest.raises(ValueError, match=r"unknown layer 'layer\.7'.*Available layers.*'embeddings', 'layer\.0'"):
        enc.encode(SENTENCES, layers=["layer.7"], progress=False)
    with pytest.raises(ValueError, match=r"layer index 3 is out of range.*3 layers \(-3\.\.2\)"):
        enc.encode(SENTENCES, layers=[3], progress=False)
    with pytest.raises(ValueError, match="layers must be 'all', a layer name or a non-empty list"):
        enc.encode(SENTENCES, layers=[], progress=False)
    arrays = ArrayEncoder(np.eye(2, dtype=np.float32), ids=["a", "b"])
    with pytest.raises(ValueError, match="gives no access to hidden layers.*Use layers=None"):
        arrays.encode(["a"], layers="all", progress=False)


def test_sentence_transformer_layers_end_with_its_own_embedding(tiny_bert_dir, tiny_bert, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    from latentalign.encoders import HFEncoder, SentenceTransformerEncoder

    try:  # sentence-transformers >= 6 moved the building blocks
        from sentence_transformers.sentence_transformer import modules as st_modules
    except ImportError:  # pragma: no cover - older releases
        from sentence_transformers import models as st_modules
    modules = [st_modules.Transformer(str(tiny_bert_dir)), st_modules.Pooling(32, pooling_mode="mean")]
    st.SentenceTransformer(modules=modules, device="cpu").save(str(tmp_path / "st"))
    enc = SentenceTransformerEncoder(tmp_path / "st")
    states = enc.encode(SENTENCES, batch_size=2, layers="all", progress=False)
    assert list(states) == ["embeddings", "layer.0", "layer.1"]
    np.testing.assert_allclose(states["layer.1"], enc.encode(SENTENCES, progress=False), atol=2e-5, rtol=1e-4)
    ref0 = HFEncoder(*tiny_bert, pooling="mean", layer=1).encode(SENTENCES, progress=False)
    np.testing.assert_allclose(states["layer.0"], ref0, atol=2e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------ torch modules (CNN)
class TinyCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 3, stride=2)
        )
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.flat = torch.nn.Flatten()
        self.head = torch.nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flat(self.pool(self.features(x))))


def test_torch_module_layers_are_spatial_means_of_the_feature_maps():
    torch.manual_seed(0)
    net = TinyCNN().eval()
    X = np.random.default_rng(0).standard_normal((7, 1, 8, 8)).astype(np.float32)
    enc = TorchModuleEncoder(net, dim=3, modality="image")
    assert enc.layer_names() == ["features", "pool", "flat", "head"]
    counter = CountCalls(net)
    states = enc.encode(X, batch_size=4, layers=["features.0", "features", "head"], progress=False)
    assert counter.calls == 2
    with torch.no_grad():
        x = torch.from_numpy(X)
        first = net.features[0](x)
        last = net.features(x)
    np.testing.assert_allclose(states["features.0"], first.mean((2, 3)).numpy(), atol=1e-6)
    np.testing.assert_allclose(states["features"], last.mean((2, 3)).numpy(), atol=1e-6)
    np.testing.assert_allclose(states["head"], enc.encode(X, progress=False), atol=1e-6)
    assert {k: v.shape for k, v in enc.encode(X, layers="all", progress=False).items()} == {
        "features": (7, 6),
        "pool": (7, 6),
        "flat": (7, 6),
        "head": (7, 3),
    }


def test_torch_module_layer_errors():
    net = TinyCNN().eval()
    enc = TorchModuleEncoder(net, dim=3)
    X = np.zeros((2, 1, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"unknown layer 'conv9'.*\(or any nested module path\).*'features'"):
        enc.encode(X, layers=["conv9"], progress=False)

    class SkipsHead(TinyCNN):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.flat(self.pool(self.features(x)))

    skip = TorchModuleEncoder(SkipsHead().eval(), dim=6)
    with pytest.raises(ValueError, match=r"layers \['head'\] did not run in the forward pass"):
        skip.encode(X, layers=["features", "head"], progress=False)


# ------------------------------------------------------------------------------------------ image models
def _images(n: int = 3, size: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm not installed")
def test_timm_layers_are_feature_info_stages_and_end_with_forward_features():
    from latentalign.encoders import TimmEncoder

    enc = TimmEncoder("test_efficientnet", seed=0, pooling="avg")
    info = enc.model.feature_info
    assert enc.layer_names() == [entry["module"] for entry in info] == [f"blocks.{i}" for i in range(len(info))]
    ims = _images(size=32)
    counter = CountCalls(enc.model.conv_stem)
    states = enc.encode(ims, batch_size=2, layers=["conv_stem", *enc.layer_names()], progress=False)
    assert counter.calls == 2
    assert [states[entry["module"]].shape for entry in info] == [(3, entry["num_chs"]) for entry in info]
    with torch.no_grad():
        pixels = enc.preprocess(ims)
        stem = enc.model.conv_stem(pixels)
        deepest = enc.model.blocks(enc.model.bn1(stem))
    np.testing.assert_allclose(states["conv_stem"], stem.mean((2, 3)).numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(states[info[-1]["module"]], deepest.mean((2, 3)).numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite_pytorch") is None, reason="efficientnet-lite-pytorch not installed"
)
def test_efficientnet_lite_head_layer_is_the_final_embedding():
    from latentalign.encoders import EfficientNetLiteEncoder

    try:
        enc = EfficientNetLiteEncoder("lite0")
    except Exception as exc:  # the offline weights package is an optional asset
        pytest.skip(f"EfficientNet-Lite0 weights unavailable: {exc}")
    names = enc.layer_names()
    assert names[0] == "stem" and names[-1] == "head" and names[1] == "blocks.0"
    ims = _images(1, size=32)
    states = enc.encode(ims, layers=["stem", -2, "head"], progress=False)
    assert states["stem"].shape == (1, 32) and states["head"].shape == (1, 1280)
    np.testing.assert_allclose(states["head"], enc.encode(ims, progress=False), atol=1e-5, rtol=1e-5)
