"""Safe checkpoint loading: tensors load, Lightning metadata loads through inert stand-ins, code never runs."""
from __future__ import annotations

import os
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch

from plugin_bridge.checkpoints import InertGlobal, classify_globals, extract_state_dict, load_checkpoint
from plugin_bridge.errors import CheckpointError


class _RunsShell:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evals:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class _Popens:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import subprocess

        return (subprocess.Popen, (["touch", str(self.marker)],))


def _fake_module(name: str, **classes) -> types.ModuleType:
    """Install ``name`` (and its parents) in sys.modules so pickle can save classes 'from' it."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    mod = sys.modules[name]
    for cname, cls in classes.items():
        cls.__module__ = name
        cls.__qualname__ = cname
        setattr(mod, cname, cls)
    return mod


@pytest.fixture
def fake_lightning():
    before = set(sys.modules)

    class ModelCheckpoint:  # stands for pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint
        def __init__(self):
            self.best_model_path = "/ckpt/step=20000.ckpt"
            self.best_model_score = torch.tensor(0.25)

    class AttributeDict:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    _fake_module("pytorch_lightning.callbacks.model_checkpoint", ModelCheckpoint=ModelCheckpoint)
    _fake_module("lightning_fabric.utilities.data", AttributeDict=AttributeDict)
    yield ModelCheckpoint, AttributeDict
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_plain_state_dict_roundtrip(tmp_path):
    sd = OrderedDict(a=torch.arange(6, dtype=torch.float32).reshape(2, 3), b=torch.tensor([7], dtype=torch.int64))
    p = tmp_path / "plain.pt"
    torch.save(sd, p)
    out = load_checkpoint(str(p))
    assert list(out) == ["a", "b"]
    assert torch.equal(out["a"], sd["a"]) and out["b"].item() == 7
    assert extract_state_dict(out) is out


@pytest.mark.parametrize("payload", [_RunsShell, _Evals, _Popens])
def test_code_executing_checkpoint_is_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / "PWNED"
    p = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "extra": payload(marker)}, p)
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(str(p))
    msg = str(ei.value)
    assert "refused" in msg and "Nothing was executed" in msg
    expected = {"_RunsShell": "system", "_Evals": "eval", "_Popens": "Popen"}[payload.__name__]
    assert expected in msg
    assert not marker.exists()


def test_evil_global_next_to_lightning_metadata_is_still_refused(tmp_path, fake_lightning):
    ModelCheckpoint, _ = fake_lightning
    marker = tmp_path / "PWNED"
    p = tmp_path / "mixed.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "callbacks": {"cb": ModelCheckpoint()},
                "x": _RunsShell(marker)}, p)
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(str(p))
    msg = str(ei.value)
    assert "system" in msg
    # the harmless name is not blamed
    assert "ModelCheckpoint" not in msg.split("outside plain tensor data:")[1].split(".")[0]
    assert not marker.exists()


def test_legacy_plain_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    p = tmp_path / "legacy.pth"
    with open(p, "wb") as f:
        pickle.dump({"w": _RunsShell(marker)}, f)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(str(p))
    assert not marker.exists()


def test_lightning_style_checkpoint_loads_with_inert_stubs(tmp_path, fake_lightning):
    ModelCheckpoint, AttributeDict = fake_lightning
    w = torch.linspace(-1, 1, 12).reshape(3, 4)
    ckpt = {
        "epoch": 3,
        "global_step": 4_000_000,
        "pytorch-lightning_version": "2.0.0",
        "state_dict": OrderedDict([("ss_model.w", w), ("ss_model.n", torch.tensor(5))]),
        "callbacks": {"ModelCheckpoint{'monitor': None}": ModelCheckpoint()},
        "hyper_parameters": AttributeDict(lr=1e-3, batch=12),
        "np_scalar": np.float64(0.5),
        "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 3}}}},
    }
    p = tmp_path / "lightning.ckpt"
    torch.save(ckpt, p)
    # the real classes are gone before loading: the loader must not need (or import) them
    for name in [n for n in sys.modules if n.startswith(("pytorch_lightning", "lightning_fabric"))]:
        del sys.modules[name]
    out = load_checkpoint(str(p))
    assert out["global_step"] == 4_000_000
    sd = extract_state_dict(out)
    assert list(sd) == ["ss_model.w", "ss_model.n"]
    assert torch.equal(sd["ss_model.w"], w) and sd["ss_model.n"].item() == 5
    cb = next(iter(out["callbacks"].values()))
    assert isinstance(cb, InertGlobal)
    assert cb.qualname == "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"
    assert cb.state["best_model_path"] == "/ckpt/step=20000.ckpt"
    assert float(cb.state["best_model_score"]) == 0.25
    assert isinstance(out["hyper_parameters"], InertGlobal) and out["hyper_parameters"].state == {"lr": 1e-3, "batch": 12}
    assert isinstance(out["np_scalar"], InertGlobal)  # numpy never rebuilt, only recorded
    assert "pytorch_lightning" not in sys.modules and "lightning_fabric" not in sys.modules


def test_classify_globals():
    ok, bad = classify_globals(["numpy.dtype", "pytorch_lightning.callbacks.X", "posix.system",
                                "builtins.eval", "lightningfoo.Bad", "omegaconf.dictconfig.DictConfig"])
    assert ok == ["numpy.dtype", "omegaconf.dictconfig.DictConfig", "pytorch_lightning.callbacks.X"]
    assert bad == ["builtins.eval", "lightningfoo.Bad", "posix.system"]


def test_missing_empty_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(str(tmp_path / "nope.ckpt"))
    e = tmp_path / "empty.ckpt"
    e.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(str(e))
    g = tmp_path / "garbage.ckpt"
    g.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint|refused"):
        load_checkpoint(str(g))
    # a truncated zip checkpoint
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(1000)}, good)
    t = tmp_path / "trunc.pt"
    t.write_bytes(good.read_bytes()[:600])
    with pytest.raises(CheckpointError):
        load_checkpoint(str(t))


def test_extract_state_dict_rejects_non_tensor_content():
    with pytest.raises(CheckpointError, match="no state_dict"):
        extract_state_dict({"epoch": 1, "name": "x"})
    assert list(extract_state_dict({"state_dict": {"a": torch.zeros(1)}, "epoch": 2})) == ["a"]
