// umi/plugin.hpp: the C++ way to write a umi plugin.
//
//   class Echo : public umi::Plugin {
//    public:
//     static umi::PluginInfo Info() { return {.name = "echo", .version = "1.0.0"}; }
//     void Process(umi::TaskContext& task) override {
//       task.output().Set("text", task.input().Get<std::string>("text", ""));
//     }
//   };
//   UMI_DECLARE_PLUGIN(Echo)
//
// The macro defines the C entry points of umi/plugin_api.h. A plugin that
// needs per-worker state (a decoder, a CUDA stream) declares
// `using Instance = T;` and reads it with task.instance<T>(). An exception
// thrown from Process becomes an `error` result: umi::Error keeps its code,
// any other std::exception gets code `plugin_error`. Nothing escapes into the
// host. The plugin object is created once, in UMI_PluginInitialize, from the
// YAML settings when it has a constructor taking `const umi::Settings&`.
//
// Thread safety: Process runs concurrently on several host threads unless
// PluginInfo::allow_concurrent is false; a TaskContext belongs to one task
// and one thread.
#pragma once

#include <umi/plugin_api.h>

#include <msgpack.hpp>

#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace umi {

enum class Kind { kCpu = UMI_PLUGIN_KIND_CPU, kGpu = UMI_PLUGIN_KIND_GPU };

// A plugin's declared default requirement. Defaults: one core, one thread,
// 512 MiB, no GPU.
struct Requirement {
  double cpu_cores = 1.0;
  int cpu_threads = 1;
  double gpu_count = 0.0;
  int64_t memory_mb = 512;
  bool exclusive_gpu = true;
};

// One key the plugin reads from its YAML settings (plugin API 1.2).
struct SettingInfo {
  std::string name;
  std::string type;  // for people: "string", "list of directories"...
  std::string description = {};
};

struct PluginInfo {
  std::string name = {};
  std::string version = "0.0.0";
  std::string description = {};
  std::string license = {};
  Kind kind = Kind::kCpu;
  Requirement requirement = {};
  std::string task_group = {};
  bool allow_concurrent = true;
  // The task returns within microseconds and never blocks (no I/O, locks or
  // sleeps): the host may run it on its event loop, without a thread
  // hand-off (docs/writing-plugins.md). A task that overruns stalls the host.
  bool run_inline = false;
  // The keys its settings may hold; the host warns about any other key (a
  // typo would be ignored without a word). Empty: none declared, all taken.
  std::vector<SettingInfo> settings = {};
  // What the sandbox of its worker processes must grant beyond its task's
  // files (plugin API 1.3, docs/reliability.md): starting processes,
  // sockets, files it reads (a model). The host's YAML may grant more.
  struct SandboxNeeds {
    bool exec = false;
    bool network = false;
    std::vector<std::string> read = {};
    // Run only in a complete sandbox: always in worker processes, and
    // refused where it is turned off or the kernel lacks a mechanism.
    bool required = false;
  };
  SandboxNeeds sandbox = {};
};

// A failure with a stable machine-readable code (e.g. "bad_input").
class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// A read-only view of a msgpack map (a task's input or a plugin's settings).
class MapView {
 public:
  MapView(const uint8_t* data, size_t size) {
    // Nothing to unpack in an empty map (the common input of small tasks).
    if (size == 0 || (size == 1 && data[0] == 0x80)) return;
    // A zone sized to the map, not msgpack's 8 KiB default: the unpacked
    // objects take a few times the bytes they came from.
    auto zone = std::make_unique<msgpack::zone>(256 + 4 * size);
    const msgpack::object root = msgpack::unpack(*zone, reinterpret_cast<const char*>(data), size);
    handle_ = msgpack::object_handle(root, std::move(zone));
    if (handle_.get().type != msgpack::type::MAP) throw Error("bad_input", "expected a map");
  }

  // The value under `key`, or nullptr.
  const msgpack::object* Find(std::string_view key) const {
    const msgpack::object& root = handle_.get();
    if (root.type != msgpack::type::MAP) return nullptr;
    for (const auto& kv : std::span(root.via.map.ptr, root.via.map.size)) {
      if (kv.key.type == msgpack::type::STR &&
          std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == key) {
        return &kv.val;
      }
    }
    return nullptr;
  }
  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  template <typename T>
  T Get(std::string_view key, T fallback) const {
    const msgpack::object* value = Find(key);
    return value ? Convert<T>(key, *value) : fallback;
  }

  template <typename T>
  T Require(std::string_view key) const {
    const msgpack::object* value = Find(key);
    if (!value) throw Error("bad_input", "missing key '" + std::string(key) + "'");
    return Convert<T>(key, *value);
  }

  const msgpack::object& raw() const { return handle_.get(); }

 private:
  template <typename T>
  static T Convert(std::string_view key, const msgpack::object& value) {
    try {
      return value.as<T>();
    } catch (const msgpack::type_error&) {
      throw Error("bad_input", "key '" + std::string(key) + "' has the wrong type");
    }
  }

  msgpack::object_handle handle_;
};

using Settings = MapView;

// Collects a task's output map.
class Output {
 public:
  template <typename T>
  Output& Set(std::string key, const T& value) {
    entries_.emplace_back(std::move(key), msgpack::object(value, zone()));
    return *this;
  }

  // For nested values: build msgpack::object trees in this zone, then Set.
  // Made when first asked for: a task that sets nothing allocates nothing.
  msgpack::zone& zone() {
    if (!zone_) zone_ = std::make_unique<msgpack::zone>(1024);
    return *zone_;
  }

  std::string Pack() const {
    std::string packed;
    Writer writer{packed};
    msgpack::packer<Writer> packer(writer);
    packer.pack_map(static_cast<uint32_t>(entries_.size()));
    for (const auto& [key, value] : entries_) {
      packer.pack(key);
      packer.pack(value);
    }
    return packed;
  }

 private:
  struct Writer {  // a msgpack stream appending to a string
    std::string& out;
    void write(const char* data, size_t size) { out.append(data, size); }
  };
  std::unique_ptr<msgpack::zone> zone_;
  std::vector<std::pair<std::string, msgpack::object>> entries_;
};

namespace detail {
inline const UMI_HostApi*& Host() {
  static const UMI_HostApi* host = nullptr;
  return host;
}
}  // namespace detail

// One running task, as the plugin sees it.
class TaskContext {
 public:
  explicit TaskContext(UMI_Context* ctx) : ctx_(ctx), input_(ReadInput(ctx)) {
    grant_.struct_size = sizeof(grant_);
    detail::Host()->ContextGrant(ctx, &grant_);
  }

  const MapView& input() const { return input_; }
  Output& output() { return output_; }

  int threads() const { return grant_.cpu_threads; }
  double cpu_cores() const { return grant_.cpu_cores; }
  int64_t memory_mb() const { return grant_.memory_mb; }
  std::span<const int32_t> gpu_ids() const {
    return {grant_.gpu_ids, static_cast<size_t>(grant_.gpu_id_count)};
  }

  bool cancelled() const { return detail::Host()->ContextIsCancelled(ctx_) != 0; }
  // Sleeps up to `ms`; returns true when woken early by cancellation.
  bool WaitCancelled(int64_t ms) const {
    return detail::Host()->ContextWaitCancelled(ctx_, ms) != 0;
  }
  void Progress(double fraction, const std::string& message = {}) {
    detail::Host()->ContextReportProgress(ctx_, fraction, message.c_str());
  }
  void Log(UMI_LogLevel level, const std::string& message) const {
    detail::Host()->ContextLog(ctx_, level, message.c_str());
  }

  // The per-worker-thread state of a plugin that declares
  // `using Instance = T;` (created with T's default constructor).
  template <typename T>
  T& instance() const {
    return *static_cast<T*>(detail::Host()->ContextInstanceState(ctx_));
  }

  UMI_Context* raw() { return ctx_; }

 private:
  static MapView ReadInput(UMI_Context* ctx) {
    const uint8_t* data = nullptr;
    size_t size = 0;
    detail::Host()->ContextInput(ctx, &data, &size);
    return MapView(data, size);
  }

  UMI_Context* ctx_;
  MapView input_;
  Output output_;
  UMI_Grant grant_{};
};

class Plugin {
 public:
  virtual ~Plugin() = default;
  virtual void Process(TaskContext& task) = 0;
};

namespace detail {

inline UMI_Error* ToError(const std::exception_ptr& failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const Error& e) {
    return Host()->ErrorNew(e.code().c_str(), e.what());
  } catch (const std::bad_alloc&) {
    return Host()->ErrorNew("out_of_memory", "the plugin could not allocate memory (std::bad_alloc)");
  } catch (const std::exception& e) {
    return Host()->ErrorNew("plugin_error", e.what());
  } catch (...) {
    return Host()->ErrorNew("plugin_error", "unknown exception");
  }
}

template <typename P, typename = void>
struct InstanceOf {
  using type = void;
};
template <typename P>
struct InstanceOf<P, std::void_t<typename P::Instance>> {
  using type = typename P::Instance;
};

template <typename P>
struct Registration {
  // Said at compile time, by name, rather than as a template error page.
  static_assert(std::is_base_of_v<::umi::Plugin, P>, "UMI_DECLARE_PLUGIN: the class must derive from umi::Plugin");
  static_assert(std::is_same_v<decltype(P::Info()), ::umi::PluginInfo>,
                "UMI_DECLARE_PLUGIN: the class needs `static umi::PluginInfo Info()`");
  using Instance = typename InstanceOf<P>::type;

  static std::unique_ptr<P>& Plugin() {
    static std::unique_ptr<P> plugin;
    return plugin;
  }

  // Info() runs once, here; what it throws is kept for UMI_PluginDescribeError
  // and Describe returns null, which the host reports as a refusal.
  static const UMI_PluginDescriptor* Describe() {
    static const std::optional<PluginInfo> info = [] () -> std::optional<PluginInfo> {
      try {
        return P::Info();
      } catch (const std::exception& e) {
        DescribeError() = std::string("Info() threw: ") + e.what();
      } catch (...) {
        DescribeError() = "Info() threw a non-standard exception";
      }
      return std::nullopt;
    }();
    if (!info) return nullptr;
    static const std::vector<UMI_SettingDescriptor> settings = [] {
      std::vector<UMI_SettingDescriptor> out;
      for (const SettingInfo& setting : info->settings) {
        out.push_back({setting.name.c_str(), setting.type.c_str(), setting.description.c_str()});
      }
      return out;
    }();
    static const std::vector<const char*> sandbox_read = [] {
      std::vector<const char*> out;
      for (const std::string& path : info->sandbox.read) out.push_back(path.c_str());
      out.push_back(nullptr);
      return out;
    }();
    static const UMI_PluginDescriptor descriptor = {
        sizeof(UMI_PluginDescriptor),
        info->name.c_str(),
        info->version.c_str(),
        info->description.c_str(),
        info->license.c_str(),
        static_cast<UMI_PluginKind>(info->kind),
        {info->requirement.cpu_cores, info->requirement.cpu_threads, info->requirement.gpu_count,
         info->requirement.memory_mb, info->requirement.exclusive_gpu ? 1 : 0},
        info->task_group.c_str(),
        info->allow_concurrent ? 1 : 0,
        info->run_inline ? 1 : 0,
        settings.empty() ? nullptr : settings.data(),
        static_cast<int32_t>(settings.size()),
        (info->sandbox.exec ? UMI_SANDBOX_NEED_EXEC : 0u) | (info->sandbox.network ? UMI_SANDBOX_NEED_NETWORK : 0u) |
            (info->sandbox.required ? UMI_SANDBOX_REQUIRED : 0u),
        sandbox_read.data(),
    };
    return &descriptor;
  }

  static std::string& DescribeError() {
    static std::string error;
    return error;
  }

  static UMI_Error* Initialize(const UMI_HostApi* host, const uint8_t* settings, size_t size) {
    Host() = host;
    try {
      if constexpr (std::is_constructible_v<P, const Settings&>) {
        Plugin() = std::make_unique<P>(Settings(settings, size));
      } else {
        Plugin() = std::make_unique<P>();
      }
      return nullptr;
    } catch (...) {
      return ToError(std::current_exception());
    }
  }

  static UMI_Error* Execute(UMI_Context* ctx) {
    try {
      TaskContext task(ctx);
      Plugin()->Process(task);
      const std::string packed = task.output().Pack();
      Host()->ContextSetOutput(ctx, reinterpret_cast<const uint8_t*>(packed.data()),
                               packed.size());
      return nullptr;
    } catch (...) {
      return ToError(std::current_exception());
    }
  }

  static void Finalize() { Plugin().reset(); }

  static UMI_Error* InstanceInitialize(void** state) {
    *state = nullptr;
    if constexpr (!std::is_void_v<Instance>) {
      try {
        *state = new Instance();
      } catch (...) {
        return ToError(std::current_exception());
      }
    }
    return nullptr;
  }

  static void InstanceFinalize(void* state) {
    if constexpr (!std::is_void_v<Instance>) delete static_cast<Instance*>(state);
  }
};

}  // namespace detail
}  // namespace umi

// Defines the plugin's C entry points for the class `PluginClass`, which
// derives from umi::Plugin and has `static umi::PluginInfo Info()`.
#define UMI_DECLARE_PLUGIN(PluginClass)                                                     \
  extern "C" UMI_EXPORT void UMI_PluginApiVersion(uint32_t* major, uint32_t* minor) {       \
    *major = UMI_API_VERSION_MAJOR;                                                         \
    *minor = UMI_API_VERSION_MINOR;                                                         \
  }                                                                                         \
  extern "C" UMI_EXPORT const UMI_PluginDescriptor* UMI_PluginDescribe(void) {              \
    return ::umi::detail::Registration<PluginClass>::Describe();                            \
  }                                                                                         \
  extern "C" UMI_EXPORT const char* UMI_PluginDescribeError(void) {                        \
    return ::umi::detail::Registration<PluginClass>::DescribeError().c_str();               \
  }                                                                                         \
  extern "C" UMI_EXPORT UMI_Error* UMI_PluginInitialize(const UMI_HostApi* host,            \
                                                        const uint8_t* settings,            \
                                                        size_t settings_size) {             \
    return ::umi::detail::Registration<PluginClass>::Initialize(host, settings,             \
                                                                settings_size);             \
  }                                                                                         \
  extern "C" UMI_EXPORT UMI_Error* UMI_PluginExecute(UMI_Context* ctx) {                    \
    return ::umi::detail::Registration<PluginClass>::Execute(ctx);                          \
  }                                                                                         \
  extern "C" UMI_EXPORT void UMI_PluginFinalize(void) {                                     \
    ::umi::detail::Registration<PluginClass>::Finalize();                                   \
  }                                                                                         \
  extern "C" UMI_EXPORT UMI_Error* UMI_InstanceInitialize(void** instance_state) {          \
    return ::umi::detail::Registration<PluginClass>::InstanceInitialize(instance_state);    \
  }                                                                                         \
  extern "C" UMI_EXPORT void UMI_InstanceFinalize(void* instance_state) {                   \
    ::umi::detail::Registration<PluginClass>::InstanceFinalize(instance_state);             \
  }
