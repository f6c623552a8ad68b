// A plugin built for plugin API 0.x: must be refused (major differs).
#include <umi/plugin.hpp>

class OldMajor : public umi::Plugin {
 public:
  static umi::PluginInfo Info() { return {.name = "old_major"}; }
  void Process(umi::TaskContext&) override {}
};

#undef UMI_API_VERSION_MAJOR
#define UMI_API_VERSION_MAJOR 0
UMI_DECLARE_PLUGIN(OldMajor)
