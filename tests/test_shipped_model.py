"""The embedded default model loads with no flags and separates the bundled demo's sources.

Floor: 2 dB SDRi per query.  Measured for the shipped step-6400 checkpoint: speech 7.1, piano 5.6, birds
13.5 dB (step 5000: 7.4, 5.4, 15.0; step 2750: 7.5, 4.4, 12.1; step 1250: 4.9, 5.1, 7.5);
a random-weight model of the same architecture scores about 0 dB or below, so the floor tells a trained
separator from a broken or missing one with room for platform/backend differences.
"""
import os

import pytest

from plugin_bridge.audio_io import read_all
from plugin_bridge.engine.separator import Query, Separator
from plugin_bridge.models.registry import DEFAULT_WEIGHTS, load_model
from plugin_bridge.metrics import sdri

DEMO = os.path.join(os.path.dirname(__file__), "..", "plugin_bridge", "data", "demo")


@pytest.mark.skipif(not os.path.exists(DEFAULT_WEIGHTS), reason="no embedded weights in this checkout")
def test_default_model_separates_the_demo_sources():
    model = load_model(None)
    assert not model.is_random and model.cfg.sample_rate == 16000
    sep = Separator(model, backend="torch", device="cpu")
    mix, rate = read_all(os.path.join(DEMO, "mix.flac"))
    assert rate == 48000
    for query, track in [("speech", "dialogue"), ("piano", "music"), ("birds chirping", "fx")]:
        target, _ = read_all(os.path.join(DEMO, f"{track}.flac"))
        stems, _ = sep.separate_array(mix, rate, [Query(query)])
        assert stems.shape == (1,) + mix.shape
        assert sdri(target[0], stems[0, 0], mix[0]) > 2.0, query
