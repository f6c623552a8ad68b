// The Lua scripts through which a host changes the farm's state in Redis.
// Each is one atomic step that first checks who holds the entry, as
// BullMQ's scripts check a job's lock token: a host whose lease on an entry
// lapsed (it froze, lost Redis, or died and came back) finds another
// consumer there and its write fails instead of duplicating.
//
//   kPublishResults KEYS: task stream. ARGV: group, consumer, fallback
//                   stream, started key, the batch's first and last entry,
//                   how many entries the consumer may hold between them,
//                   how long to keep a result for lookups (ms; 0: not
//                   kept), then (entry, reply_to, body, key to keep it
//                   under or "", what to keep there or "" for the body)
//                   per result. A result written is also SET under its key
//                   for that long (with its task's fingerprint added:
//                   protocol.h, WithFingerprint). Returns one code per result, each result's fate
//                   its own: 1: on reply_to, entry acknowledged, its start
//                   mark cleared; 2: reply_to cannot take a stream entry
//                   (another type, or outside the ACL user's keys): the
//                   result went to the fallback stream with fields
//                   `reply_to` and `reason`, entry acknowledged; 0: the
//                   entry is not this consumer's (stale: nothing written);
//                   an error (OOM, READONLY, ...): nothing written for it,
//                   the caller holds that result and retries.
//   kRenewLeases    KEYS: task stream. ARGV: group, consumer, entry...
//                   Resets the idle time of each entry this consumer still
//                   holds (XCLAIM JUSTID: no delivery counted); returns the
//                   entries another consumer holds now (leases lost).
//   kGiveBack       KEYS: task stream. ARGV: group, consumer, entry, body,
//                   started key. Re-adds an unstarted task at the end of its
//                   stream and acknowledges the old entry, if still this
//                   consumer's. The copy carries field `d`: the deliveries
//                   charged to the task so far (hosts that died running it),
//                   which readers add to the copy's own delivery count.
//   kClaimLapsed    KEYS: task stream. ARGV: group, consumer, lease ms,
//                   entry, started key. Takes the entry if nobody renewed it
//                   for a lease. A delivery is counted only if its holder had
//                   started it (the started key, umi:started:<plugin>, names
//                   entries that began to run inside a host process, and
//                   holds `*<consumer>` for a consumer whose every entry of
//                   the stream counts as started: run on arrival): a task
//                   merely read ahead beside a poison task is not charged for
//                   the crash. Returns {entry, deliveries}, or nil when it
//                   was not there to take. Increments `umi:fence` before it
//                   takes anything: the fence of RedisTransport's
//                   transactions (a claim is the only way an entry leaves its
//                   holder without the holder's own act).
//   kTakeLevels     KEYS: the task streams of one or more plugins, each
//                   plugin's highest priority level first. ARGV: group,
//                   consumer, then per plugin: how many of KEYS are its
//                   streams, and how many entries to take in all. Reads
//                   (XREADGROUP >) each plugin's streams in order until its
//                   count is reached; returns them as XREADGROUP does:
//                   [stream, entries] per stream that gave any. Used for
//                   single entries (a starving task taken to reserve for).
//   kPlanTake       KEYS and ARGV as kTakeLevels. Returns how many entries
//                   to take from each stream (one count per key, in order),
//                   from the group's lag (entries not delivered yet), the
//                   highest level first, each plugin's counts adding up to at
//                   most its count; the caller reads them with plain
//                   XREADGROUPs: how a host drains its streams. Cheaper than
//                   kTakeLevels even for a few entries, which pass through
//                   Lua twice there.
//   kHeartbeat      KEYS: host key. ARGV: consumer, ttl ms, unix ms now,
//                   longest gap ms, field, value... Writes the heartbeat hash
//                   and the host's last-seen time (umi:hosts-seen) unless
//                   another process (another consumer) holds the host's
//                   name: returns 0 then. Writes the farm's tick (umi:tick,
//                   server time in ms) and, when the last tick is older than
//                   the longest gap, when beats resumed (umi:resumed).
//   kDropConsumer   KEYS: task stream. ARGV: group, consumer, started key.
//                   Deletes the consumer (and its `*<consumer>` start mark)
//                   only while it has nothing pending (a plain XGROUP
//                   DELCONSUMER would drop entries it just took).
//
//   kOpenFlow       KEYS: the flow entry's stream, the flow's hash
//                   (redis_flows.h). ARGV: group, consumer, entry, started
//                   key, how many hash fields follow, the fields (name,
//                   value...), then (stream, task) per step that waits for
//                   nothing. Writes the hash with the flow's start time
//                   (t0, server ms), adds those steps, acknowledges the
//                   entry: 1. 0: the entry is not this consumer's; 2: a
//                   flow with that id is running (nothing written).
//   kEndStep        KEYS: the step entry's stream, the flow's hash. ARGV:
//                   group, consumer, entry, started key, step name, its
//                   result, its output (if ok), "1" if ok, its failure,
//                   the key to keep its result under (or ""), for how long
//                   (ms), this host's name, the key to keep the flow's
//                   result under (or ""), the fallback stream. Records the
//                   result (once), releases or skips what follows,
//                   acknowledges the entry: 1; 0: stale. On the flow's last
//                   step it also writes the flow's one result to reply_to
//                   (2: to the fallback, as kPublishResults does), keeps it
//                   with the flow's fingerprint and deletes the hash; a
//                   refused write (OOM, ...) returns the error, and the call
//                   again finds the step recorded and ends the flow.
//   kCancelFlow     KEYS: the flow's hash. Marks the flow cancelled and
//                   records every step not yet released cancelled (each
//                   released step still ends as it ends, and the last to end
//                   writes the flow's result, `cancelled`): 1; 0: no such
//                   flow in progress.
//
// Scripts that renew or heartbeat declare `allow-oom`: they do not grow the
// data set, and a full Redis must not make live hosts look dead.
//
// Thread safety: constants.
#pragma once

namespace umi::redis_scripts {

extern const char* const kPublishResults;
extern const char* const kRenewLeases;
extern const char* const kGiveBack;
extern const char* const kPlanTake;
extern const char* const kClaimLapsed;
extern const char* const kTakeLevels;
extern const char* const kHeartbeat;
extern const char* const kDropConsumer;
extern const char* const kOpenFlow;
extern const char* const kEndStep;
extern const char* const kCancelFlow;

}  // namespace umi::redis_scripts
