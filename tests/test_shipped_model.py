"""The embedded default model loads with no flags and splits the bundled demo scene into dialogue, music and
effects.

The demo (plugin_bridge/data/demo, made by scripts/make_demo.py) is a post-production style mix whose three
source tracks ship beside it; every recorded source is a held-out (dev-split) file the model never trained on.
Each stem is scored against its track by SDRi and by the best-constant-gain floor (the mixture just turned
down), the bar a stem must clear to be of any use: on this dialogue-first mix the floor is high for the quiet
music bed and effects (about 10 and 13 dB SDRi) and low for the dialogue.

FLOORS are the shipped model's measured figures (``python -m plugin_bridge.training.dme``) less 1 dB, room for
platform and backend differences; a random-weight model of the same architecture scores about 0 dB SDRi or
below, so they tell a trained separator from a broken or missing one.
"""
import os

import numpy as np
import pytest

from plugin_bridge.engine.separator import Query, Separator
from plugin_bridge.models.registry import DEFAULT_WEIGHTS, load_model
from plugin_bridge.training.dme import SPLIT, evaluate_dme, load_demo

#: query -> minimum SDRi (dB), one query per separation.  Measured for the shipped model: see MARGINS.
FLOORS = {"dialogue": 2.7, "music": 12.7, "effects": 10.5}
#: query -> minimum SDRi minus the best-gain floor (dB); the shipped model (v2, mean of the stable run's EMA
#: snapshots at steps 17500-19250) measured 3.09 / 3.41 / -1.90: asked alone, "effects" stays below the mixture
#: turned down on this one mix (together with the other two: +0.24), although on the 50 "effects" dev mixtures
#: it gains 5.06 dB median SDRi (models/weights/MODEL_CARD.md)
MARGINS = {"dialogue": 2.0, "music": 2.4, "effects": -2.9}

needs_weights = pytest.mark.skipif(not os.path.exists(DEFAULT_WEIGHTS), reason="no embedded weights in this checkout")


@pytest.fixture(scope="module")
def separator():
    model = load_model(None)
    assert not model.is_random and model.cfg.sample_rate == 16000
    return Separator(model, backend="torch", device="cpu")


def test_demo_scene_is_the_sum_of_its_tracks():
    mix, rate, tracks = load_demo()
    assert rate == 48000 and mix.shape[1] == 12 * 48000
    assert set(tracks) == {name for _, name in SPLIT}
    # the 24-bit files hold 15 significant bits: the sum matches to within the rounding of the four files
    assert np.max(np.abs(sum(tracks.values()) - mix)) < 4 / 16384


@needs_weights
def test_default_model_splits_the_demo_into_dialogue_music_effects(separator):
    res = evaluate_dme(separator)
    for query, rec in res["single"].items():
        assert rec["sdri"] > FLOORS[query], (query, rec)
        assert rec["margin"] > MARGINS[query], (query, rec)
    # asked together (masks shared, as `make demo` runs them), no stem falls far below asking alone
    for query, rec in res["joint"].items():
        assert rec["sdri"] > res["single"][query]["sdri"] - 1.5, (query, rec)


@needs_weights
def test_demo_stems_keep_length_and_position(separator):
    mix, rate, _ = load_demo()
    stems, residual = separator.separate_array(mix, rate, [Query(q) for q, _ in SPLIT])
    assert stems.shape == (len(SPLIT),) + mix.shape and residual.shape == mix.shape
    assert np.max(np.abs(stems.sum(axis=0) + residual - mix)) < 1e-4  # nothing lost, nothing added
