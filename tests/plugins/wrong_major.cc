// A plugin built for an incompatible plugin API major: must be refused.
#include <umi/plugin.hpp>

class WrongMajor : public umi::Plugin {
 public:
  static umi::PluginInfo Info() { return {.name = "wrong_major"}; }
  void Process(umi::TaskContext&) override {}
};

// The macro reads the version where it expands: pretend to be API 2.0.
#undef UMI_API_VERSION_MAJOR
#define UMI_API_VERSION_MAJOR 2
UMI_DECLARE_PLUGIN(WrongMajor)
