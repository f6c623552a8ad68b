// Must not compile: UMI_DECLARE_PLUGIN of a class that is no umi::Plugin.
#include <umi/plugin.hpp>

struct NotAPlugin {
  static umi::PluginInfo Info() { return {.name = "oops"}; }
};

UMI_DECLARE_PLUGIN(NotAPlugin)
