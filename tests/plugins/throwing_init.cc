// A plugin whose constructor (run by UMI_PluginInitialize) throws: refused.
#include <umi/plugin.hpp>

#include <stdexcept>

class ThrowingInit : public umi::Plugin {
 public:
  static umi::PluginInfo Info() { return {.name = "throwing_init"}; }
  ThrowingInit() { throw std::runtime_error("cannot initialize"); }
  void Process(umi::TaskContext&) override {}
};

UMI_DECLARE_PLUGIN(ThrowingInit)
