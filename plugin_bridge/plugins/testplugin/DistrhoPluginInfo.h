/*
 * PBTestGain: a minimal gain plugin used only by plugin-bridge's tests.
 * Written for plugin-bridge; licence: ISC (GPL-compatible). No third-party code.
 */
#ifndef DISTRHO_PLUGIN_INFO_H_INCLUDED
#define DISTRHO_PLUGIN_INFO_H_INCLUDED

#define DISTRHO_PLUGIN_BRAND   "plugin-bridge"
#define DISTRHO_PLUGIN_NAME    "PBTestGain"
#define DISTRHO_PLUGIN_URI     "urn:plugin-bridge:test-gain"
#define DISTRHO_PLUGIN_BRAND_ID  PlBr
#define DISTRHO_PLUGIN_UNIQUE_ID PbTg

#define DISTRHO_PLUGIN_HAS_UI        0
#define DISTRHO_PLUGIN_IS_RT_SAFE    1
#define DISTRHO_PLUGIN_NUM_INPUTS    2
#define DISTRHO_PLUGIN_NUM_OUTPUTS   2
#define DISTRHO_PLUGIN_WANT_PROGRAMS 0
#define DISTRHO_PLUGIN_WANT_STATE    0

#endif
