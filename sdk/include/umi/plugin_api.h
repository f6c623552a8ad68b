/*
 * umi plugin ABI: the C surface between umi-host and a plugin library.
 *
 * A plugin is a shared library that exports the UMI_Plugin* entry points
 * below with C linkage. Only plain structs, C strings and msgpack bytes cross
 * this boundary, so a plugin built with another compiler or standard library
 * still loads. The host calls back into itself only through the UMI_HostApi
 * function table it hands to UMI_PluginInitialize.
 *
 * Versioning: the host loads a plugin only when the plugin's major version
 * equals the host's and the plugin's minor version is not newer than the
 * host's. Structs carry their size so fields can be appended in a minor bump.
 *
 * Thread safety: UMI_PluginInitialize and UMI_PluginFinalize are called once,
 * from one thread; the UMI_Instance* pair runs on the worker it serves. UMI_PluginExecute may be called concurrently from several
 * host worker threads unless the descriptor sets allow_concurrent to 0. All
 * UMI_HostApi functions are safe to call from the thread running Execute.
 *
 * Most authors never use this header directly: umi/plugin.hpp wraps it.
 */
#ifndef UMI_PLUGIN_API_H_
#define UMI_PLUGIN_API_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UMI_API_VERSION_MAJOR 1
#define UMI_API_VERSION_MINOR 3

#if defined(__GNUC__)
#define UMI_EXPORT __attribute__((visibility("default")))
#else
#define UMI_EXPORT
#endif

/* Opaque, host-owned handles. */
typedef struct UMI_Context UMI_Context; /* one running task */
typedef struct UMI_Error UMI_Error;     /* a failure: code + message */

typedef enum UMI_PluginKind {
  UMI_PLUGIN_KIND_CPU = 0,
  UMI_PLUGIN_KIND_GPU = 1
} UMI_PluginKind;

typedef enum UMI_LogLevel {
  UMI_LOG_DEBUG = 0,
  UMI_LOG_INFO = 1,
  UMI_LOG_WARN = 2,
  UMI_LOG_ERROR = 3
} UMI_LogLevel;

/* What one task of the plugin needs. A task-group or YAML override may
 * replace any field; see docs/configuration.md for the precedence. */
typedef struct UMI_Requirement {
  double cpu_cores;      /* physical-core share charged to the task */
  int32_t cpu_threads;   /* parallelism the task may use */
  double gpu_count;      /* 0, a fraction below 1, or a whole number */
  int64_t memory_mb;     /* memory budget */
  int32_t exclusive_gpu; /* non-zero: whole devices, shared with nobody */
} UMI_Requirement;

/* One key a plugin reads from its YAML `settings` (since 1.2). */
typedef struct UMI_SettingDescriptor {
  const char* name;        /* the key under plugins.<name>.settings */
  const char* type;        /* for people: "string", "list of directories", ... */
  const char* description;
} UMI_SettingDescriptor;

typedef struct UMI_PluginDescriptor {
  uint32_t struct_size; /* sizeof(UMI_PluginDescriptor) */
  const char* name;     /* unique within a host; [a-z0-9_]+ */
  const char* version;
  const char* description;
  const char* license;
  UMI_PluginKind kind;
  UMI_Requirement requirement; /* the plugin's declared default */
  const char* task_group;      /* may be NULL or "" */
  int32_t allow_concurrent;    /* 0: at most one task at a time */
  /* Since 1.1 (a 1.0 descriptor ends before it: read as 0). Non-zero: a
   * task returns within microseconds and never blocks (no I/O, no locks,
   * no sleeps), so the host may run it on its event loop instead of
   * handing it to a worker thread. Not for GPU tasks, pinned CPUs or
   * `isolation: process`, where a worker runs it anyway. */
  int32_t run_inline;
  /* Since 1.2 (older descriptors end before it: none declared). The keys
   * the plugin reads from its settings; the host warns about any other key
   * under plugins.<name>.settings, which would otherwise be ignored without
   * a word (a typo). NULL or 0: none declared, every key is taken. */
  const UMI_SettingDescriptor* settings;
  int32_t setting_count;
  /* Since 1.3 (older descriptors end before it: nothing declared). What the
   * sandbox of its worker processes must grant beyond its task's files
   * (docs/reliability.md): UMI_SANDBOX_NEED_* bits, and the files or
   * directories it reads (a model), NULL-terminated (NULL: none). The
   * host's YAML, plugins.<name>.sandbox, may grant more. */
  uint32_t sandbox_needs;
  const char* const* sandbox_read;
} UMI_PluginDescriptor;

/* UMI_PluginDescriptor.sandbox_needs */
#define UMI_SANDBOX_NEED_EXEC 1u    /* start processes: fork, exec a helper */
#define UMI_SANDBOX_NEED_NETWORK 2u /* open sockets */
#define UMI_SANDBOX_REQUIRED 4u     /* runs only in a complete sandbox: in a worker
                                       process even without `isolation: process`,
                                       refused with `sandbox: false` or where the
                                       kernel lacks a mechanism */

/* What the pool granted the running task. gpu_ids points into host memory
 * that stays valid until Execute returns. */
typedef struct UMI_Grant {
  uint32_t struct_size;
  double cpu_cores;
  int32_t cpu_threads;
  int64_t memory_mb;
  const int32_t* gpu_ids;
  int32_t gpu_id_count;
} UMI_Grant;

typedef struct UMI_HostApi {
  uint32_t struct_size;
  /* The task's `input` map, msgpack-encoded; valid until Execute returns. */
  void (*ContextInput)(const UMI_Context* ctx, const uint8_t** data, size_t* size);
  void (*ContextGrant)(const UMI_Context* ctx, UMI_Grant* grant);
  /* Non-zero once the task should stop (timeout, cancel, shutdown). */
  int (*ContextIsCancelled)(const UMI_Context* ctx);
  /* Blocks up to timeout_ms or until the task is cancelled; returns non-zero
   * if it was cancelled. A cancellable sleep without polling. */
  int (*ContextWaitCancelled)(const UMI_Context* ctx, int64_t timeout_ms);
  /* Sets the task's `output`; data must be one msgpack map. Copied. */
  void (*ContextSetOutput)(UMI_Context* ctx, const uint8_t* data, size_t size);
  void (*ContextReportProgress)(UMI_Context* ctx, double fraction, const char* message);
  void (*ContextLog)(const UMI_Context* ctx, UMI_LogLevel level, const char* message);
  /* Makes an error for Execute or Initialize to return; the host frees it. */
  UMI_Error* (*ErrorNew)(const char* code, const char* message);
  /* The state UMI_InstanceInitialize made for the calling worker thread,
   * or NULL when the plugin has none. */
  void* (*ContextInstanceState)(const UMI_Context* ctx);
} UMI_HostApi;

/* ---- Required entry points ---------------------------------------------- */

/* Reports the UMI_API_VERSION_* the plugin was built against. */
UMI_EXPORT void UMI_PluginApiVersion(uint32_t* major, uint32_t* minor);

/* Returns a descriptor with static lifetime, or NULL when the plugin cannot
 * describe itself (the host then refuses the library). */
UMI_EXPORT const UMI_PluginDescriptor* UMI_PluginDescribe(void);

/* Called once after loading. `settings` is the msgpack map from
 * plugins.<name>.settings in the YAML config (an empty map when absent).
 * Returns NULL on success; an error refuses the plugin. */
UMI_EXPORT UMI_Error* UMI_PluginInitialize(const UMI_HostApi* host, const uint8_t* settings,
                                           size_t settings_size);

/* Runs one task. Returns NULL on success (output set with ContextSetOutput,
 * or an empty map when never set) or an error. */
UMI_EXPORT UMI_Error* UMI_PluginExecute(UMI_Context* ctx);

/* ---- Optional entry points ---------------------------------------------- */

/* Called once before the library is unloaded. */
UMI_EXPORT void UMI_PluginFinalize(void);

/* Why UMI_PluginDescribe returned NULL (static lifetime), for the host's
 * refusal message. */
UMI_EXPORT const char* UMI_PluginDescribeError(void);

/* Per-worker state (a decoder, a CUDA stream, scratch buffers): the host
 * calls UMI_InstanceInitialize on a worker thread before that thread's first
 * Execute of this plugin, hands the state to every Execute on that thread
 * (ContextInstanceState), and calls UMI_InstanceFinalize with it when the
 * worker thread ends. An error fails the task at hand (code and message as
 * returned) and initialization is tried again on the next task. */
UMI_EXPORT UMI_Error* UMI_InstanceInitialize(void** instance_state);
UMI_EXPORT void UMI_InstanceFinalize(void* instance_state);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* UMI_PLUGIN_API_H_ */
