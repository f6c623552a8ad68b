// A plugin built for plugin API 1.99, newer than the host: must be refused.
#include <umi/plugin.hpp>

class NewerMinor : public umi::Plugin {
 public:
  static umi::PluginInfo Info() { return {.name = "newer_minor"}; }
  void Process(umi::TaskContext&) override {}
};

#undef UMI_API_VERSION_MINOR
#define UMI_API_VERSION_MINOR 99
UMI_DECLARE_PLUGIN(NewerMinor)
