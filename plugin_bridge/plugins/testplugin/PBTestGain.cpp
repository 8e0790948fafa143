/*
 * PBTestGain: multiplies both channels by 10^(gain_db/20). Test plugin for plugin-bridge.
 * Written for plugin-bridge; licence: ISC (GPL-compatible). No third-party code.
 */
#include "DistrhoPlugin.hpp"
#include <cmath>

START_NAMESPACE_DISTRHO

class PBTestGain : public Plugin
{
public:
    PBTestGain() : Plugin(1, 0, 0), fGainDb(0.0f), fGain(1.0f) {}

protected:
    const char* getLabel() const override { return "PBTestGain"; }
    const char* getDescription() const override { return "Plain gain, for plugin-bridge tests"; }
    const char* getMaker() const override { return "plugin-bridge"; }
    const char* getLicense() const override { return "ISC"; }
    uint32_t getVersion() const override { return d_version(1, 0, 0); }
    int64_t getUniqueId() const override { return d_cconst('P', 'b', 'T', 'g'); }

    void initParameter(uint32_t index, Parameter& parameter) override
    {
        if (index != 0)
            return;
        parameter.hints = kParameterIsAutomatable;
        parameter.name = "Gain";
        parameter.symbol = "gain_db";
        parameter.unit = "dB";
        parameter.ranges.def = 0.0f;
        parameter.ranges.min = -24.0f;
        parameter.ranges.max = 24.0f;
    }

    float getParameterValue(uint32_t index) const override
    {
        return index == 0 ? fGainDb : 0.0f;
    }

    void setParameterValue(uint32_t index, float value) override
    {
        if (index != 0)
            return;
        fGainDb = value;
        fGain = std::pow(10.0f, value / 20.0f);
    }

    void run(const float** inputs, float** outputs, uint32_t frames) override
    {
        for (uint32_t c = 0; c < 2; ++c)
            for (uint32_t i = 0; i < frames; ++i)
                outputs[c][i] = inputs[c][i] * fGain;
    }

private:
    float fGainDb;
    float fGain;

    DISTRHO_DECLARE_NON_COPYABLE_WITH_LEAK_DETECTOR(PBTestGain)
};

Plugin* createPlugin()
{
    return new PBTestGain();
}

END_NAMESPACE_DISTRHO
