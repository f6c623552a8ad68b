#include "runtime/plugin_registry.h"

#include <boost/dll/shared_library.hpp>
#include <msgpack.hpp>
#include <spdlog/spdlog.h>

#include <dlfcn.h>

#include <algorithm>
#include <cstddef>
#include <regex>

#include "common/text.h"
#include "config/effective_requirement.h"
#include "runtime/python_plugin.h"
#include "runtime/task_context.h"

namespace umi {

struct PluginRegistry::Library {
  boost::dll::shared_library library;
  void (*finalize)() = nullptr;
};

namespace {

// The keys of a msgpack map (a plugin's settings); none when it is not one.
std::vector<std::string> MsgpackMapKeys(const std::string& bytes) {
  std::vector<std::string> keys;
  try {
    const msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size());
    const msgpack::object& map = handle.get();
    if (map.type != msgpack::type::MAP) return keys;
    for (uint32_t i = 0; i < map.via.map.size; ++i) {
      if (map.via.map.ptr[i].key.type == msgpack::type::STR) keys.push_back(map.via.map.ptr[i].key.as<std::string>());
    }
  } catch (const std::exception&) {
  }
  return keys;
}

std::string Join(const std::vector<std::string>& words) {
  std::string text;
  for (const std::string& word : words) text += (text.empty() ? "" : ", ") + word;
  return text;
}

std::string ErrorText(const UMI_Error& error) { return error.code + ": " + error.message; }

}  // namespace

PluginRegistry::PluginRegistry(const HardwareConfig& config)
    : config_(std::make_shared<const HardwareConfig>(config)), capacity_(PoolCapacity::FromConfig(config)) {}

PluginRegistry::~PluginRegistry() {
  plugins_.clear();
  for (auto it = libraries_.rbegin(); it != libraries_.rend(); ++it) {
    if ((*it)->finalize) (*it)->finalize();
  }
}

void PluginRegistry::Refuse(const std::filesystem::path& path, std::string reason, std::string plugin) {
  spdlog::error("plugin library {} refused: {}", path.string(), reason);
  refused_.push_back({path, std::move(reason), std::move(plugin)});
  ++refusals_total_;
}

std::string PluginRegistry::RefusalOf(const std::string& name) const {
  for (const RefusedLibrary& refused : refused_) {
    if (refused.plugin == name) return refused.reason;
  }
  return {};
}

std::vector<std::string> PluginRegistry::LoadDirectory(const std::filesystem::path& dir) {
  std::error_code error;
  std::vector<std::filesystem::path> files;
  std::erase_if(refused_, [&dir](const RefusedLibrary& refused) { return refused.path == dir; });
  if (std::filesystem::is_regular_file(dir, error)) {  // --plugins may name one plugin file
    if (dir.extension() != ".so" && !IsPythonPluginFile(dir)) {
      Refuse(dir, "not a plugin file: give a directory, a .so library or a <name>.py file");
      return {};
    }
    files.push_back(dir);
  } else {
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
      if (entry.is_regular_file() && (entry.path().extension() == ".so" || IsPythonPluginFile(entry.path()))) {
        files.push_back(entry.path());
      }
    }
    if (error) {
      Refuse(dir, "cannot read plugin directory: " + error.message());
      return {};
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> loaded;
  for (const auto& file : files) {
    const bool already = std::any_of(plugins_.begin(), plugins_.end(),
                                     [&file](const auto& entry) { return entry.second->path == file; });
    if (already) continue;
    std::erase_if(refused_, [&file](const RefusedLibrary& refused) { return refused.path == file; });
    if (std::filesystem::is_symlink(file, error)) {
      const std::filesystem::path target = std::filesystem::canonical(file, error);
      if (!error && target.parent_path() != std::filesystem::canonical(file.parent_path(), error)) {
        spdlog::warn("plugin file {} is a symlink to {}, outside its directory: that file is loaded "
                     "(umi-host plugins --json: resolved_path)",
                     file.string(), target.string());
      }
    }
    const size_t before = plugins_.size();
    const bool accepted = file.extension() == ".so" ? LoadLibrary(file) : LoadPython(file);
    if (accepted && plugins_.size() > before) {
      for (const auto& [name, plugin] : plugins_) {
        if (plugin->path == file) loaded.push_back(name);
      }
    }
  }
  return loaded;
}

Status PluginRegistry::Register(std::unique_ptr<LoadedPlugin> plugin) {
  const std::string name = plugin->name;
  if (plugins_.count(name) > 0) return Status(ErrorCode::kInvalidConfig, "a plugin named " + name + " is loaded already");
  EffectiveRequirement effective = ResolveRequirement(*config_, name, plugin->declared, plugin->declared_task_group);
  plugin->requirement = effective.requirement;
  plugin->task_group = effective.task_group;
  plugin->requirement_sources = std::move(effective.sources);
  if (const Status valid = plugin->requirement.Validate(); !valid.ok()) {
    return Status(ErrorCode::kInvalidConfig, "plugin " + name + ": effective requirement is invalid: " + valid.message());
  }
  if (const Status feasible = CheckFeasible(capacity_, plugin->requirement); !feasible.ok()) {
    return Status(ErrorCode::kInvalidConfig, "plugin " + name + " can never run on this pool: " + feasible.message());
  }
  plugins_.emplace(name, std::move(plugin));
  return {};
}

PluginRegistry::LoadReport PluginRegistry::LoadDirectories(const std::vector<std::filesystem::path>& dirs) {
  LoadReport report;
  const uint64_t refusals_before = refusals_total();
  for (const auto& dir : dirs) {
    for (std::string& name : LoadDirectory(dir)) report.loaded.push_back(std::move(name));
  }
  // This call's refusals are the newest entries.
  const size_t added = std::min(static_cast<size_t>(refusals_total() - refusals_before), refused_.size());
  for (auto it = refused_.end() - static_cast<long>(added); it != refused_.end(); ++it) {
    report.refused.push_back(it->path.string() + ": " + it->reason);
  }
  return report;
}

StatusOr<PluginRegistry::ConfigVersion> PluginRegistry::PlanVersion(HardwareConfig config) const {
  ConfigVersion version;
  version.capacity = PoolCapacity::FromConfig(config);
  for (const auto& [name, plugin] : plugins_) {
    EffectiveRequirement effective = ResolveRequirement(config, name, plugin->declared, plugin->declared_task_group);
    if (const Status valid = effective.requirement.Validate(); !valid.ok()) {
      return Status(ErrorCode::kInvalidConfig, "plugin " + name + ": effective requirement is invalid: " + valid.message());
    }
    if (const Status feasible = CheckFeasible(version.capacity, effective.requirement); !feasible.ok()) {
      return Status(ErrorCode::kInvalidConfig, "plugin " + name + " could never run on the new pool: " + feasible.message());
    }
    version.requirements.emplace(name, std::move(effective));
  }
  version.config = std::make_shared<const HardwareConfig>(std::move(config));
  return version;
}

void PluginRegistry::Install(ConfigVersion version) {
  for (auto& [name, effective] : version.requirements) {
    LoadedPlugin& plugin = *plugins_.at(name);
    if (!effective.warning.empty()) spdlog::warn("{}", effective.warning);
    plugin.requirement = effective.requirement;
    plugin.task_group = effective.task_group;
    plugin.requirement_sources = std::move(effective.sources);
  }
  config_ = std::move(version.config);
  capacity_ = std::move(version.capacity);
}

bool PluginRegistry::Resolve(const std::filesystem::path& path, LoadedPlugin& plugin) {
  const std::string& name = plugin.name;
  if (const Status valid = plugin.declared.Validate(); !valid.ok()) {
    Refuse(path, "declared requirement is invalid: " + valid.message(), name);
    return false;
  }
  EffectiveRequirement effective = ResolveRequirement(*config_, name, plugin.declared, plugin.declared_task_group);
  if (!effective.warning.empty()) spdlog::warn("{}", effective.warning);
  plugin.requirement = effective.requirement;
  plugin.task_group = effective.task_group;
  plugin.requirement_sources = std::move(effective.sources);
  if (const Status valid = plugin.requirement.Validate(); !valid.ok()) {
    Refuse(path, "effective requirement is invalid: " + valid.message(), name);
    return false;
  }
  if (const Status feasible = CheckFeasible(capacity_, plugin.requirement); !feasible.ok()) {
    Refuse(path, "plugin " + name + " can never run on this pool: " + feasible.message(), name);
    return false;
  }
  return true;
}

bool PluginRegistry::LoadPython(const std::filesystem::path& path) {
  auto plugin = std::make_unique<LoadedPlugin>();
  const std::string stem = path.stem().string();
  if (const Status described = DescribePythonPlugin(path, *plugin); !described.ok()) {
    Refuse(path, described.message(), stem);
    return false;
  }
  if (const LoadedPlugin* existing = Find(plugin->name)) {
    Refuse(path, "plugin name '" + plugin->name + "' is already taken by " + existing->path.string(), plugin->name);
    return false;
  }
  if (!Resolve(path, *plugin)) return false;
  spdlog::info("loaded Python plugin {} {} from {} ({})", plugin->name, plugin->version, path.string(),
               plugin->requirement.ToString());
  Accept(std::move(plugin));
  return true;
}

void PluginRegistry::Accept(std::unique_ptr<LoadedPlugin> plugin) {
  std::error_code error;
  plugin->file_time = std::filesystem::last_write_time(plugin->path, error);
  plugin->file_size = std::filesystem::file_size(plugin->path, error);
  const std::string name = plugin->name;
  plugins_.emplace(name, std::move(plugin));
}

std::vector<std::string> PluginRegistry::ChangedOnDisk() const {
  std::vector<std::string> changed;
  for (const auto& [name, plugin] : plugins_) {
    if (plugin->path.empty()) continue;  // registered in code, not from a file
    std::error_code time_error, size_error;
    const auto time = std::filesystem::last_write_time(plugin->path, time_error);
    const auto size = std::filesystem::file_size(plugin->path, size_error);
    if (time_error || size_error || time != plugin->file_time || size != plugin->file_size) changed.push_back(name);
  }
  return changed;
}

namespace {

// The library's required entry points, its API version and its descriptor;
// an error says why the library is refused.
StatusOr<const UMI_PluginDescriptor*> Describe(boost::dll::shared_library& lib) {
  for (const char* symbol : {"UMI_PluginApiVersion", "UMI_PluginDescribe", "UMI_PluginInitialize",
                             "UMI_PluginExecute"}) {
    if (!lib.has(symbol)) {
      const bool none = !lib.has("UMI_PluginApiVersion") && !lib.has("UMI_PluginDescribe") &&
                        !lib.has("UMI_PluginInitialize") && !lib.has("UMI_PluginExecute");
      return Status(ErrorCode::kInvalidConfig,
                    std::string("missing required entry point ") + symbol +
                        (none ? " (it exports no UMI_* entry point: did you forget UMI_DECLARE_PLUGIN, or extern \"C\"?)"
                              : ""));
    }
  }
  uint32_t major = 0, minor = 0;
  lib.get<void(uint32_t*, uint32_t*)>("UMI_PluginApiVersion")(&major, &minor);
  if (major != UMI_API_VERSION_MAJOR || minor > UMI_API_VERSION_MINOR) {
    return Status(ErrorCode::kInvalidConfig,
                  "built for plugin API " + std::to_string(major) + "." + std::to_string(minor) +
                      ", this host speaks " + std::to_string(UMI_API_VERSION_MAJOR) + "." +
                      std::to_string(UMI_API_VERSION_MINOR) + " (major must match, minor must not be newer)");
  }
  const UMI_PluginDescriptor* d = nullptr;
  try {  // an SDK plugin never throws here; a hand-written one might
    d = lib.get<const UMI_PluginDescriptor*()>("UMI_PluginDescribe")();
  } catch (const std::exception& e) {
    return Status(ErrorCode::kInvalidConfig, std::string("UMI_PluginDescribe threw: ") + e.what());
  } catch (...) {
    return Status(ErrorCode::kInvalidConfig, "UMI_PluginDescribe threw");
  }
  if (!d) {
    const char* why = lib.has("UMI_PluginDescribeError") ? lib.get<const char*()>("UMI_PluginDescribeError")() : nullptr;
    return Status(ErrorCode::kInvalidConfig,
                  std::string("UMI_PluginDescribe returned no descriptor") + (why && *why ? ": " + std::string(why) : ""));
  }
  // A 1.0 descriptor ends before run_inline; every later field is optional.
  if (d->struct_size < offsetof(UMI_PluginDescriptor, run_inline)) {
    return Status(ErrorCode::kInvalidConfig, "UMI_PluginDescribe returned a descriptor too small");
  }
  return d;
}

// What a descriptor declares, read as far as its struct_size reaches.
std::unique_ptr<LoadedPlugin> FromDescriptor(const UMI_PluginDescriptor& d, const std::filesystem::path& path) {
  auto plugin = std::make_unique<LoadedPlugin>();
  plugin->name = d.name ? d.name : "";
  plugin->version = d.version ? d.version : "";
  plugin->description = d.description ? d.description : "";
  plugin->license = d.license ? d.license : "";
  plugin->kind = d.kind == UMI_PLUGIN_KIND_GPU ? UMI_PLUGIN_KIND_GPU : UMI_PLUGIN_KIND_CPU;
  plugin->allow_concurrent = d.allow_concurrent != 0;
  plugin->run_inline =
      d.struct_size >= offsetof(UMI_PluginDescriptor, run_inline) + sizeof(d.run_inline) && d.run_inline != 0;
  plugin->path = path;
  plugin->declared.cpu_cores = Quantity::FromDouble(d.requirement.cpu_cores);
  plugin->declared.cpu_threads = d.requirement.cpu_threads;
  plugin->declared.gpu_count = Quantity::FromDouble(d.requirement.gpu_count);
  plugin->declared.memory_mb = d.requirement.memory_mb;
  plugin->declared.exclusive_gpu = d.requirement.exclusive_gpu != 0;
  plugin->declared_task_group = d.task_group ? d.task_group : "";
  const size_t settings_end = offsetof(UMI_PluginDescriptor, setting_count) + sizeof(d.setting_count);
  if (d.struct_size >= settings_end && d.settings && d.setting_count > 0) {
    for (int32_t i = 0; i < d.setting_count; ++i) {
      const UMI_SettingDescriptor& setting = d.settings[i];
      if (!setting.name || !*setting.name) continue;
      plugin->settings.push_back(
          {setting.name, setting.type ? setting.type : "", setting.description ? setting.description : ""});
    }
  }
  if (d.struct_size >= offsetof(UMI_PluginDescriptor, sandbox_read) + sizeof(d.sandbox_read)) {
    plugin->sandbox_needs.exec = (d.sandbox_needs & UMI_SANDBOX_NEED_EXEC) != 0;
    plugin->sandbox_needs.network = (d.sandbox_needs & UMI_SANDBOX_NEED_NETWORK) != 0;
    plugin->sandbox_needs.required = (d.sandbox_needs & UMI_SANDBOX_REQUIRED) != 0;
    for (const char* const* read = d.sandbox_read; read && *read; ++read) plugin->sandbox_needs.read.emplace_back(*read);
  }
  return plugin;
}

// The entry points a task calls: execute, and the per-instance pair if any.
Status BindEntryPoints(boost::dll::shared_library& lib, LoadedPlugin& plugin) {
  if (lib.has("UMI_InstanceInitialize") != lib.has("UMI_InstanceFinalize")) {
    return Status(ErrorCode::kInvalidConfig, "exports only one of UMI_InstanceInitialize and UMI_InstanceFinalize");
  }
  plugin.execute = lib.get<UMI_Error*(UMI_Context*)>("UMI_PluginExecute");
  if (lib.has("UMI_InstanceInitialize")) {
    plugin.instance_initialize = lib.get<UMI_Error*(void**)>("UMI_InstanceInitialize");
    plugin.instance_finalize = lib.get<void(void*)>("UMI_InstanceFinalize");
  }
  return {};
}

}  // namespace

bool PluginRegistry::LoadLibrary(const std::filesystem::path& path) {
  // Open and describe, then validate (name, requirement), then initialize
  // with its settings and accept; any step's refusal is said with the path.
  auto library = std::make_unique<Library>();
  try {
    library->library.load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    Refuse(path, std::string("cannot load: ") + e.what());
    return false;
  }
  boost::dll::shared_library& lib = library->library;
  const StatusOr<const UMI_PluginDescriptor*> descriptor = Describe(lib);
  if (!descriptor.ok()) {
    Refuse(path, descriptor.error());
    return false;
  }
  std::unique_ptr<LoadedPlugin> plugin = FromDescriptor(*descriptor.value(), path);
  const std::string name = plugin->name;
  if (!std::regex_match(name, std::regex("[a-z0-9_]{1,64}"))) {
    Refuse(path, "plugin name '" + name + "' is not 1-64 characters of [a-z0-9_]");
    return false;
  }
  if (const LoadedPlugin* existing = Find(name)) {
    Refuse(path, "plugin name '" + name + "' is already taken by " + existing->path.string(), name);
    return false;
  }
  if (!Resolve(path, *plugin)) return false;
  if (const Status bound = BindEntryPoints(lib, *plugin); !bound.ok()) {
    Refuse(path, bound.message(), name);
    return false;
  }

  const auto config = config_->plugins.find(name);
  static const std::string kEmptyMap("\x80", 1);
  const std::string& settings = config != config_->plugins.end() ? config->second.settings_msgpack : kEmptyMap;
  auto initialize = lib.get<UMI_Error*(const UMI_HostApi*, const uint8_t*, size_t)>("UMI_PluginInitialize");
  if (OwnedError error{initialize(HostApi(), reinterpret_cast<const uint8_t*>(settings.data()), settings.size())}) {
    Refuse(path, "initialize failed: " + ErrorText(*error), name);
    return false;
  }
  if (lib.has("UMI_PluginFinalize")) library->finalize = lib.get<void()>("UMI_PluginFinalize");

  // Accepted libraries stay mapped until exit (RTLD_NODELETE): what their
  // dependencies (FFmpeg, OpenSSL, CUDA) keep in globals stays valid for
  // atexit handlers and thread-local destructors.
  dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  spdlog::info("loaded plugin {} {} from {} ({})", plugin->name, plugin->version, path.string(),
               plugin->requirement.ToString());
  libraries_.push_back(std::move(library));
  Accept(std::move(plugin));
  return true;
}

InstanceStates::~InstanceStates() {
  for (const auto& [plugin, state] : states_) plugin->instance_finalize(state);
}

OwnedError InstanceStates::Acquire(const LoadedPlugin& plugin, void** state) {
  *state = nullptr;
  if (!plugin.instance_initialize) return nullptr;
  if (const auto existing = states_.find(&plugin); existing != states_.end()) {
    *state = existing->second;
    return nullptr;
  }
  if (OwnedError error{plugin.instance_initialize(state)}) return error;
  states_.emplace(&plugin, *state);
  return nullptr;
}

OwnedError AcquireInstanceState(const LoadedPlugin& plugin, void** state) {
  thread_local InstanceStates instances;
  return instances.Acquire(plugin, state);
}

const LoadedPlugin* PluginRegistry::Find(const std::string& name) const {
  const auto found = plugins_.find(name);
  return found == plugins_.end() ? nullptr : found->second.get();
}

std::vector<std::string> PluginRegistry::ConfigWarnings() const {
  std::vector<std::string> loaded;
  for (const auto& [name, plugin] : plugins_) loaded.push_back(name);
  std::vector<std::string> lines;
  for (const auto& [name, section] : config_->plugins) {
    if (plugins_.count(name)) continue;
    const bool refused = std::any_of(refused_.begin(), refused_.end(),
                                     [&name](const RefusedLibrary& library) { return library.plugin == name; });
    if (refused) continue;  // its refusal already says why
    const std::string closest = ClosestMatch(name, loaded);
    lines.push_back("plugins." + name + ": no loaded plugin is named '" + name + "'" +
                    (closest.empty() ? "" : " (did you mean '" + closest + "'?)") + "; the section is ignored");
  }
  for (const auto& [name, plugin] : plugins_) {
    const auto section = config_->plugins.find(name);
    if (plugin->settings.empty() || section == config_->plugins.end()) continue;
    std::vector<std::string> declared;
    for (const LoadedPlugin::Setting& setting : plugin->settings) declared.push_back(setting.name);
    for (const std::string& key : MsgpackMapKeys(section->second.settings_msgpack)) {
      if (std::find(declared.begin(), declared.end(), key) != declared.end()) continue;
      const std::string closest = ClosestMatch(key, declared);
      lines.push_back("plugins." + name + ".settings." + key + ": " + name + " reads no setting '" + key + "'" +
                      (closest.empty() ? "" : " (did you mean '" + closest + "'?)") + "; it reads " +
                      Join(declared) + "; the key is ignored");
    }
  }
  return lines;
}

}  // namespace umi
