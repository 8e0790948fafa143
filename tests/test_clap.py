"""AudioSep checkpoint loading (strict ss_model, CLAP text tower) and the CLAP text encoder.

Synthetic checkpoints use the official ss_model key names and shapes (from the reference key list) with
stride-0 expanded tensors (a few bytes on disk each) and a TINY RoBERTa text tower (config override),
so the file-level path (safe loader -> strict load) is exercised quickly.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch

from plugin_bridge.errors import CheckpointError, EncoderUnavailableError
from plugin_bridge.models.audiosep import DFT_CONSTANTS, load_audiosep_checkpoint
from plugin_bridge.models.encoders.clap import ClapTextEncoder, resolve_tokenizer_files
from plugin_bridge.models.registry import load_model

REF = "/work/shared/reference/audiosep_state_dict_keys.txt"
HERE = os.path.dirname(os.path.abspath(__file__))


def official_ss_keys() -> list[tuple[str, tuple[int, ...]]]:
    """The 332 official ss_model entries: the reference list where present, else the key list the
    parity fixture recorded from upstream's ResUNet30.state_dict()."""
    out = []
    if os.path.exists(REF):
        with open(REF) as f:
            for line in f:
                name, shape = line.rstrip("\n").split("\t")
                out.append((name, tuple(json.loads(shape))))
        return out
    d = np.load(os.path.join(HERE, "fixtures", "audiosep_parity.npz"), allow_pickle=False)
    for k, s in zip(d["keys"], d["shapes"]):
        out.append(("ss_model." + str(k), tuple(int(x) for x in str(s).split(",")) if str(s) else ()))
    return out


def ss_value(i: int, name: str) -> float:
    if name.endswith("running_var"):
        return 1.0 + 0.01 * (i % 7)
    return 0.001 * ((i * 37) % 101 - 50)


def synthetic_ss_state() -> "OrderedDict[str, torch.Tensor]":
    sd = OrderedDict()
    for i, (name, shape) in enumerate(official_ss_keys()):
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(4_000_000, dtype=torch.int64)
        else:
            sd[name] = torch.full((1,), ss_value(i, name)).expand(shape)  # stride 0: tiny on disk
    return sd


# -- tiny tokenizer + text tower ------------------------------------------------------------------------
TINY_MERGES = [("d", "o"), ("do", "g"), ("Ġ", "b"), ("a", "r"), ("Ġb", "ar"), ("k", "i"), ("n", "g")]


def write_tiny_tokenizer(folder) -> dict:
    os.makedirs(folder, exist_ok=True)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for c in list("abcdefghijklmnopqrstuvwxyz") + ["Ġ"]:
        vocab[c] = len(vocab)
    for a, b in TINY_MERGES:
        vocab.setdefault(a + b, len(vocab))
    vocab["<mask>"] = len(vocab)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in TINY_MERGES) + "\n")
    return vocab


TINY_TEXT = dict(vocab_size=48, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                 max_position_embeddings=40)


def tiny_text_state(seed: int = 0, prefix: str = "query_encoder.model.") -> "OrderedDict[str, torch.Tensor]":
    from transformers import RobertaConfig, RobertaModel

    from plugin_bridge.models.encoders.clap import ROBERTA_BASE

    torch.manual_seed(seed)
    rob = RobertaModel(RobertaConfig(**{**ROBERTA_BASE, **TINY_TEXT}), add_pooling_layer=True)
    sd = OrderedDict()
    sd[prefix + "text_branch.embeddings.position_ids"] = torch.arange(40)[None]  # legacy buffer: ignored
    for k, v in rob.state_dict().items():
        sd[prefix + "text_branch." + k] = v.clone()
    sd[prefix + "text_projection.0.weight"] = torch.randn(512, 16) * 0.2
    sd[prefix + "text_projection.0.bias"] = torch.randn(512) * 0.1
    sd[prefix + "text_projection.2.weight"] = torch.randn(512, 512) * 0.05
    sd[prefix + "text_projection.2.bias"] = torch.randn(512) * 0.1
    sd[prefix + "text_transform.sequential.0.weight"] = torch.zeros(512, 512)  # present upstream, unused
    sd[prefix + "logit_scale_t"] = torch.tensor(2.0)
    sd[prefix + "audio_branch.bn0.weight"] = torch.ones(64)
    return sd


def reference_embedding(text_sd: dict, ids: list[int], prefix="query_encoder.model.") -> np.ndarray:
    """Independent computation: transformers RobertaModel + explicit projection maths."""
    from transformers import RobertaConfig, RobertaModel

    from plugin_bridge.models.encoders.clap import ROBERTA_BASE

    rob = RobertaModel(RobertaConfig(**{**ROBERTA_BASE, **TINY_TEXT}), add_pooling_layer=True).eval()
    rob.load_state_dict({k[len(prefix + "text_branch."):]: v for k, v in text_sd.items()
                         if k.startswith(prefix + "text_branch.") and not k.endswith("position_ids")})
    with torch.no_grad():
        x = torch.tensor([ids])
        pooled = rob(input_ids=x, attention_mask=torch.ones_like(x)).pooler_output
        h = torch.relu(pooled @ text_sd[prefix + "text_projection.0.weight"].T + text_sd[prefix + "text_projection.0.bias"])
        y = h @ text_sd[prefix + "text_projection.2.weight"].T + text_sd[prefix + "text_projection.2.bias"]
    y = y[0].numpy().astype(np.float64)
    return y / np.linalg.norm(y)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    write_tiny_tokenizer(str(d))
    return str(d)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    state = OrderedDict(synthetic_ss_state())
    state.update(tiny_text_state())
    p = tmp_path_factory.mktemp("ck") / "audiosep_synthetic.ckpt"
    torch.save({"epoch": 0, "global_step": 4_000_000, "state_dict": state}, p)
    return str(p), state


@pytest.fixture(scope="module")
def loaded(ckpt, tok_dir):
    return load_audiosep_checkpoint(ckpt[0], tokenizer=tok_dir, text_config=TINY_TEXT)


def _save(tmp_path, state, name="x.ckpt"):
    p = tmp_path / name
    torch.save({"state_dict": state}, p)
    return str(p)


def test_official_key_list_is_complete():
    keys = official_ss_keys()
    assert len(keys) == 332 and len({k for k, _ in keys}) == 332
    assert set(DFT_CONSTANTS) <= {k for k, _ in keys}


def test_synthetic_audiosep_checkpoint_loads_strictly(ckpt, loaded):
    path, state = ckpt
    assert os.path.getsize(path) < 5_000_000  # stride-0 tensors: the file stays small
    m = loaded
    assert not m.is_random and m.cfg.name == "audiosep-resunet30" and m.cfg.sample_rate == 32000
    net_sd = m.net.state_dict()
    assert len(net_sd) == 327
    for k, v in net_sd.items():  # every network tensor came from the file, value for value
        ref = state["ss_model." + k]
        assert torch.equal(v, ref.to(v.dtype).expand_as(v)), k
    enc = m.encoder()
    assert enc.id.startswith("clap-roberta-") and m.encoder_id == enc.id and enc.dim == 512
    assert enc.token_ids("dog barking") == [0, 32, 35, 36, 37, 2]
    v = enc.encode(["dog barking"])[0]
    assert v.shape == (512,) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    ref = reference_embedding(state, [0, 32, 35, 36, 37, 2])
    assert np.max(np.abs(v - ref)) < 1e-5


def test_padding_invariance_justifies_unpadded_tokenization(loaded):
    """Upstream pads to max_length with an attention mask; we do not pad. Same vector within float error."""
    enc = loaded.encoder()
    ids = enc.token_ids("dog barking")
    padded = ids + [1] * (38 - len(ids))
    mask = [1] * len(ids) + [0] * (38 - len(ids))
    with torch.no_grad():
        vp = enc.tower(torch.tensor([padded]), torch.tensor([mask]))[0].numpy()
    assert np.max(np.abs(vp - enc.encode(["dog barking"])[0])) < 1e-5


def test_truncation_at_max_length(loaded):
    enc = loaded.encoder()
    ids = enc.token_ids("dog " * 100)
    assert len(ids) == enc.max_length == 38 and ids[0] == 0 and ids[-1] == 2
    assert enc.encode(["dog " * 100]).shape == (1, 512)


@pytest.mark.parametrize("key", ["ss_model.base.encoder_block3.conv_block1.conv2.weight",
                                 "ss_model.film.decoder_block3->conv_block2->beta1.weight",
                                 "ss_model.base.stft.conv_real.weight"])
def test_missing_ss_key_is_named(tmp_path, tok_dir, key):
    st = synthetic_ss_state()
    del st[key]
    st.update(tiny_text_state())
    with pytest.raises(CheckpointError) as ei:
        load_audiosep_checkpoint(_save(tmp_path, st), tokenizer=tok_dir, text_config=TINY_TEXT)
    assert "1 missing" in str(ei.value) and key in str(ei.value)


def test_unexpected_ss_key_is_named(tmp_path, tok_dir):
    st = synthetic_ss_state()
    st["ss_model.base.encoder_block7.conv_block1.bn1.weight"] = torch.zeros(32)
    st.update(tiny_text_state())
    with pytest.raises(CheckpointError) as ei:
        load_audiosep_checkpoint(_save(tmp_path, st), tokenizer=tok_dir, text_config=TINY_TEXT)
    msg = str(ei.value)
    assert "1 unexpected" in msg and "ss_model.base.encoder_block7.conv_block1.bn1.weight" in msg
    assert "missing" not in msg


def test_wrong_shape_is_named(tmp_path, tok_dir):
    st = synthetic_ss_state()
    st["ss_model.base.istft.ola_window"] = torch.zeros(1024)
    st.update(tiny_text_state())
    with pytest.raises(CheckpointError, match=r"ss_model.base.istft.ola_window \(1024,\) \(expected \(2048,\)\)"):
        load_audiosep_checkpoint(_save(tmp_path, st), tokenizer=tok_dir, text_config=TINY_TEXT)


def test_missing_text_tower_key_is_named(tmp_path, tok_dir):
    st = synthetic_ss_state()
    text = tiny_text_state()
    del text["query_encoder.model.text_branch.encoder.layer.1.output.dense.weight"]
    st.update(text)
    with pytest.raises(CheckpointError, match=r"text_branch\.encoder\.layer\.1\.output\.dense\.weight"):
        load_audiosep_checkpoint(_save(tmp_path, st), tokenizer=tok_dir, text_config=TINY_TEXT)


def test_not_an_audiosep_checkpoint(tmp_path, tok_dir):
    with pytest.raises(CheckpointError, match="no 'ss_model"):
        load_audiosep_checkpoint(_save(tmp_path, {"encoder.w": torch.zeros(3)}), tokenizer=tok_dir)


def test_separate_laion_clap_checkpoint(tmp_path, ckpt, loaded, tok_dir):
    path, state = ckpt
    # separator-only AudioSep file: no text tower -> clear error unless a CLAP .pt is given
    ss_only = _save(tmp_path, synthetic_ss_state(), "ss_only.ckpt")
    with pytest.raises(CheckpointError, match="no CLAP text tower.*LAION CLAP"):
        load_audiosep_checkpoint(ss_only, tokenizer=tok_dir, text_config=TINY_TEXT)
    # LAION layout: {'state_dict': {'module.text_branch...'}}, same weights
    clap = {"epoch": 15, "state_dict": tiny_text_state(prefix="module.")}
    clap_path = tmp_path / "clap.pt"
    torch.save(clap, clap_path)
    m = load_audiosep_checkpoint(ss_only, tokenizer=tok_dir, clap_ckpt=str(clap_path), text_config=TINY_TEXT)
    m_full = loaded
    assert m.encoder_id == m_full.encoder_id  # same text-tower weights -> same id -> shared cache is correct
    assert np.max(np.abs(m.encoder().encode(["dog"]) - m_full.encoder().encode(["dog"]))) < 1e-6


def test_encoder_id_follows_weights_so_cache_never_mixes(tmp_path, tok_dir):
    a = ClapTextEncoder(tiny_text_state(seed=1), tokenizer=tok_dir, config=TINY_TEXT)
    b = ClapTextEncoder(tiny_text_state(seed=2), tokenizer=tok_dir, config=TINY_TEXT)
    assert a.id != b.id and a.cache.root != b.cache.root
    va, vb = a.encode(["dog"])[0], b.encode(["dog"])[0]
    assert np.max(np.abs(va - vb)) > 1e-2
    # a fresh encoder with a's weights reads a's cached vector; with b's weights, b's
    a2 = ClapTextEncoder(tiny_text_state(seed=1), tokenizer=tok_dir, config=TINY_TEXT)
    assert a2.id == a.id and a2.cache.get("dog") is not None
    assert np.array_equal(a2.encode(["dog"])[0], va)


def test_missing_tokenizer_files_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGIN_BRIDGE_DATA", str(tmp_path / "data"))
    with pytest.raises(EncoderUnavailableError) as ei:
        resolve_tokenizer_files(None, hf_cache_dir=str(tmp_path / "empty_hf"))
    msg = str(ei.value)
    assert "vocab.json" in msg and "merges.txt" in msg and "--tokenizer" in msg
    assert str(tmp_path / "data" / "tokenizers" / "roberta-base") in msg
    half = tmp_path / "half"
    half.mkdir()
    (half / "vocab.json").write_text("{}")
    with pytest.raises(EncoderUnavailableError, match=r"lacks merges\.txt"):
        resolve_tokenizer_files(str(half))
    with pytest.raises(EncoderUnavailableError, match="does not exist"):
        resolve_tokenizer_files(str(tmp_path / "nowhere"))
    # loading a checkpoint fails the same way, before the file is loaded (only its type is sniffed)
    import zipfile

    with zipfile.ZipFile(tmp_path / "never_read.ckpt", "w") as z:
        z.writestr("archive/data.pkl", b"not loaded")
    with pytest.raises(EncoderUnavailableError, match="vocab.json"):
        load_model(str(tmp_path / "never_read.ckpt"), tokenizer=str(half))


def test_tokenizer_from_data_dir_and_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGIN_BRIDGE_DATA", str(tmp_path / "data"))
    udir = tmp_path / "data" / "tokenizers" / "roberta-base"
    write_tiny_tokenizer(str(udir))
    assert resolve_tokenizer_files(None, hf_cache_dir=str(tmp_path / "hf")) == (
        str(udir / "vocab.json"), str(udir / "merges.txt"))
    monkeypatch.setenv("PLUGIN_BRIDGE_DATA", str(tmp_path / "data2"))
    snap = tmp_path / "hf" / "models--FacebookAI--roberta-base" / "snapshots" / "abc123"
    write_tiny_tokenizer(str(snap))
    (tmp_path / "hf" / "models--FacebookAI--roberta-base" / "refs").mkdir()
    (tmp_path / "hf" / "models--FacebookAI--roberta-base" / "refs" / "main").write_text("abc123")
    assert resolve_tokenizer_files(None, hf_cache_dir=str(tmp_path / "hf")) == (
        str(snap / "vocab.json"), str(snap / "merges.txt"))


def test_bad_vocab_file(tmp_path):
    d = tmp_path / "bad"
    write_tiny_tokenizer(str(d))
    (d / "vocab.json").write_text('{"a": 0}')
    with pytest.raises(EncoderUnavailableError, match="not a RoBERTa vocabulary"):
        ClapTextEncoder(tiny_text_state(), tokenizer=str(d), config=TINY_TEXT)
