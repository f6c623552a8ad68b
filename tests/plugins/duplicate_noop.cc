// A second plugin named "noop": the first one loaded keeps the name.
#include <umi/plugin.hpp>

class DuplicateNoop : public umi::Plugin {
 public:
  static umi::PluginInfo Info() { return {.name = "noop", .version = "9.9.9"}; }
  void Process(umi::TaskContext&) override {}
};

UMI_DECLARE_PLUGIN(DuplicateNoop)
