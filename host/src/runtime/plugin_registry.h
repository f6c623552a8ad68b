// PluginRegistry: finds, loads and describes plugin libraries.
//
// Every regular file ending in ".so" in the plugin directories is loaded
// with Boost.DLL (RTLD_NOW | RTLD_LOCAL); every "<name>.py" is a Python
// plugin (python_plugin.h), described by importing it in an interpreter
// and always run in worker processes. A library is refused, with the
// reason kept for `umi-host plugins` and logged, when: it cannot be loaded,
// a required entry point is missing, its API major differs from the host's
// or its minor is newer, its descriptor is invalid, its name is taken by an
// earlier library, or its UMI_PluginInitialize fails. The rest still load.
//
// Each plugin's effective requirement is resolved once, at load time (see
// effective_requirement.h); a plugin whose effective requirement cannot fit
// the whole pool is refused, with the numbers.
//
// Reload: Reconfigure re-resolves every loaded plugin's requirement against
// a new config (all or nothing), and LoadDirectory again loads only
// libraries not loaded yet (retrying refused ones). A plugin's settings are
// read once, by UMI_PluginInitialize: changing them needs a restart.
//
// Thread safety: loading and Reconfigure run on one thread (the host's
// loop), which alone reads the requirement fields. Worker threads use only
// a LoadedPlugin's entry points and name, which never change; LoadedPlugin
// objects never move or go away while the registry lives.
// UMI_PluginFinalize runs when the registry is destroyed; accepted
// libraries stay mapped until the process exits.
#pragma once

#include <umi/plugin_api.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/hardware_config.h"
#include "scheduling/resource_pool.h"
#include "common/requirement.h"
#include "common/status.h"
#include "common/status_or.h"
#include "config/effective_requirement.h"
#include "runtime/task_context.h"

namespace umi {

struct LoadedPlugin {
  std::string name;
  std::string version;
  std::string description;
  std::string license;
  UMI_PluginKind kind = UMI_PLUGIN_KIND_CPU;
  bool allow_concurrent = true;
  bool run_inline = false;  // short and non-blocking: runs on the event loop (plugin API 1.1)
  bool python = false;      // a <name>.py file, run by Python worker processes (python_plugin.h)
  std::string python_source;  // the file as it was loaded: what its workers run, whatever the disk says later
  struct Setting {
    std::string name, type, description;
  };
  std::vector<Setting> settings;  // declared (plugin API 1.2, SETTINGS in Python); empty: none
  struct SandboxNeeds {  // declared (plugin API 1.3, SANDBOX in Python): what its sandbox grants
    bool exec = false;
    bool network = false;
    std::vector<std::filesystem::path> read;
    bool required = false;  // only in a complete sandbox: always isolated, never `sandbox: false`
  };
  SandboxNeeds sandbox_needs;
  std::filesystem::path path;
  // The file as it was loaded: a reload reports a plugin whose file changed
  // since (a running process keeps the code it loaded).
  std::filesystem::file_time_type file_time{};
  uintmax_t file_size = 0;
  ResourceRequirement declared;  // as the plugin declares it
  ResourceRequirement requirement;  // after task group and YAML overrides
  std::string task_group;           // effective; empty: none
  std::string declared_task_group;  // as the plugin declares it
  std::map<std::string, std::string> requirement_sources;  // field -> where it came from
  UMI_Error* (*execute)(UMI_Context*) = nullptr;
  UMI_Error* (*instance_initialize)(void**) = nullptr;  // optional
  void (*instance_finalize)(void*) = nullptr;           // optional
};

// Instance states (UMI_InstanceInitialize) made for one thread, one per
// plugin, finalized when this object goes.
class InstanceStates {
 public:
  InstanceStates() = default;
  ~InstanceStates();
  InstanceStates(const InstanceStates&) = delete;
  InstanceStates& operator=(const InstanceStates&) = delete;
  // `plugin`'s state, made on first use; the plugin's error (owned by the
  // caller) if that failed.
  OwnedError Acquire(const LoadedPlugin& plugin, void** state);

 private:
  std::map<const LoadedPlugin*, void*> states_;
};

// The calling worker thread's instance state for `plugin`, created on first
// use and finalized when the thread exits. Returns the plugin's error, owned
// by the caller, if initialization failed.
OwnedError AcquireInstanceState(const LoadedPlugin& plugin, void** state);

struct RefusedLibrary {
  std::filesystem::path path;
  std::string reason;
  std::string plugin;  // the name it declared, when it got that far
};

class PluginRegistry {
 public:
  explicit PluginRegistry(const HardwareConfig& config);
  ~PluginRegistry();
  PluginRegistry(const PluginRegistry&) = delete;
  PluginRegistry& operator=(const PluginRegistry&) = delete;

  // Loads every library in `dir` not loaded yet (or `dir` itself, when it
  // names a .so or .py file); a missing directory is one refusal. Returns
  // the names of the plugins it loaded.
  std::vector<std::string> LoadDirectory(const std::filesystem::path& dir);
  // The same for each of `dirs` (a reload): what this call loaded and refused.
  struct LoadReport {
    std::vector<std::string> loaded;   // plugin names
    std::vector<std::string> refused;  // "path: why"
  };
  LoadReport LoadDirectories(const std::vector<std::filesystem::path>& dirs);
  // A config and what it means for the plugins loaded (their effective
  // requirements, the pool's capacity): built and checked by PlanVersion
  // with nothing changed, put in force by Install in one step.
  struct ConfigVersion {
    std::shared_ptr<const HardwareConfig> config;
    PoolCapacity capacity;
    std::map<std::string, EffectiveRequirement> requirements;  // per loaded plugin
  };
  // kInvalidConfig with why when a loaded plugin could not run under `config`.
  StatusOr<ConfigVersion> PlanVersion(HardwareConfig config) const;
  void Install(ConfigVersion version);
  // The config in force: the one the host's parts read (none keeps a copy).
  const HardwareConfig& config() const { return *config_; }
  // Adds a plugin that does not come from a shared library (a built-in, a
  // test's): `declared` and `declared_task_group` set, the rest resolved
  // against the config as for a library. kInvalidConfig when it could not run.
  Status Register(std::unique_ptr<LoadedPlugin> plugin);
  // Loads one library; false (and a RefusedLibrary entry) when refused.
  bool LoadLibrary(const std::filesystem::path& path);
  // Describes and registers one Python plugin file; false when refused.
  bool LoadPython(const std::filesystem::path& path);

  const LoadedPlugin* Find(const std::string& name) const;
  // Why a library declaring plugin `name` was refused; empty if none was.
  std::string RefusalOf(const std::string& name) const;
  const std::map<std::string, std::unique_ptr<LoadedPlugin>>& plugins() const { return plugins_; }
  // Libraries refused now (the latest attempt at each path), oldest first.
  const std::vector<RefusedLibrary>& refused() const { return refused_; }
  // What the config says that nothing reads, most likely typos ("did you
  // mean" when a name is near), a line each: a `plugins.<name>` section
  // naming neither a loaded plugin nor a refused library's plugin, and a key
  // under a plugin's `settings` that the plugin does not declare (when it
  // declares its settings).
  std::vector<std::string> ConfigWarnings() const;
  // Loaded plugins whose file changed or went away since it was loaded:
  // only a restart runs the new version.
  std::vector<std::string> ChangedOnDisk() const;
  // Refusals ever made, retries at reload included.
  uint64_t refusals_total() const { return refusals_total_; }

 private:
  struct Library;
  void Refuse(const std::filesystem::path& path, std::string reason, std::string plugin = {});
  // Validates `plugin`'s declared requirement and resolves its effective
  // one against the config; false (refused) when either cannot run.
  bool Resolve(const std::filesystem::path& path, LoadedPlugin& plugin);
  // Registers an accepted plugin, noting its file's time and size.
  void Accept(std::unique_ptr<LoadedPlugin> plugin);

  std::shared_ptr<const HardwareConfig> config_;
  PoolCapacity capacity_;
  std::vector<std::unique_ptr<Library>> libraries_;  // finalized in reverse load order
  std::map<std::string, std::unique_ptr<LoadedPlugin>> plugins_;
  std::vector<RefusedLibrary> refused_;
  uint64_t refusals_total_ = 0;
};

}  // namespace umi
