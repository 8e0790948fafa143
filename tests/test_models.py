"""Model files: our safetensors format loads strictly, tampering is detected, unknown queries are flagged."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from plugin_bridge.errors import CheckpointError
from plugin_bridge.models.registry import (DEFAULT_CONFIG, ConceptIndex, load_model, load_safetensors_model,
                                           save_safetensors_model)
from plugin_bridge.models.resunet import ResUNet, ResUNetConfig
from plugin_bridge.testing import HashEncoder

SMALL = ResUNetConfig(name="small", sample_rate=16000, n_fft=256, hop=128, condition_size=384,
                      encoder_channels=(4, 8), encoder_pools=((2, 2), (2, 2)), bottleneck_channels=8,
                      input_transform="log1p")


def test_safetensors_roundtrip_reproduces_output(tmp_path):
    torch.manual_seed(0)
    net = ResUNet(SMALL).eval()
    p = str(tmp_path / "m.safetensors")
    save_safetensors_model(net, p, step=12)
    m = load_safetensors_model(p)
    assert m.cfg == SMALL and m.metadata["step"] == "12"
    x, c = torch.randn(1, 1, 4000), torch.randn(1, 384)
    with torch.no_grad():
        assert torch.equal(net(x, c), m.net(x, c))


def test_tampered_files_are_refused(tmp_path):
    net = ResUNet(SMALL)
    p = str(tmp_path / "m.safetensors")
    save_safetensors_model(net, p)
    tensors = load_file(p)
    from safetensors import safe_open
    with safe_open(p, framework="pt") as f:
        meta = f.metadata()
    # a missing tensor
    t2 = dict(tensors)
    k = sorted(t2)[3]
    del t2[k]
    save_file(t2, str(tmp_path / "missing.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="1 missing"):
        load_safetensors_model(str(tmp_path / "missing.safetensors"))
    # an unexpected one
    t3 = dict(tensors, **{"base.extra.weight": torch.zeros(2)})
    save_file(t3, str(tmp_path / "extra.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="base.extra.weight"):
        load_safetensors_model(str(tmp_path / "extra.safetensors"))
    # NaN weights
    t4 = dict(tensors)
    k = "base.pre_conv.weight"
    t4[k] = torch.full_like(t4[k], float("nan"))
    save_file(t4, str(tmp_path / "nan.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="NaN"):
        load_safetensors_model(str(tmp_path / "nan.safetensors"))
    # a config that does not match the tensors
    meta2 = dict(meta, config=json.dumps(dict(json.loads(meta["config"]), encoder_channels=[4, 16])))
    save_file(tensors, str(tmp_path / "cfg.safetensors"), metadata=meta2)
    with pytest.raises(CheckpointError, match="shapes|missing|unexpected"):
        load_safetensors_model(str(tmp_path / "cfg.safetensors"))
    # garbage bytes
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError):
        load_safetensors_model(str(tmp_path / "junk.safetensors"))
    with pytest.raises(CheckpointError, match="unknown model file type"):
        load_model(str(tmp_path / "model.xyz"))


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="divisible"):
        ResUNetConfig(n_fft=500, encoder_channels=(4, 8), encoder_pools=((2, 2), (2, 2))).validate()
    with pytest.raises(ValueError, match="unknown"):
        ResUNetConfig.from_dict({"n_fft": 512, "bogus": 1})


def test_default_architecture_size():
    net = ResUNet(DEFAULT_CONFIG)
    n = sum(p.numel() for p in net.parameters())
    assert 1e6 < n < 10e6  # sized for CPU training and >= 40x real-time inference


def test_far_queries_are_flagged():
    vocab = {"labels": {"piano": {"synonyms": ["grand piano"], "captions": ["someone playing the piano"]},
                        "rain": {"synonyms": ["rainfall"], "captions": ["rain falling on a roof"]}},
             "unsupported": ["dog barking"]}
    idx = ConceptIndex(HashEncoder(384), vocab, threshold=0.5)
    m = idx.match("grand piano")
    assert m.known and m.closest[0][0] == "piano" and m.similarity == pytest.approx(1.0, abs=1e-5)
    far = idx.match("a completely unrelated request 1234")
    assert not far.known and len(far.closest) == 2 and far.similarity < 0.5
    dog = idx.match("dog barking")
    assert not dog.known and dog.unsupported_hit == "dog barking"
