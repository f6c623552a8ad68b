// A plugin whose Info() throws: refused with the reason, the host unharmed.
#include <umi/plugin.hpp>

#include <stdexcept>

class ThrowingInfo : public umi::Plugin {
 public:
  static umi::PluginInfo Info() { throw std::runtime_error("no info today"); }
  void Process(umi::TaskContext&) override {}
};

UMI_DECLARE_PLUGIN(ThrowingInfo)
