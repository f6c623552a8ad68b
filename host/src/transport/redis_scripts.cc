#include "transport/redis_scripts.h"

namespace umi::redis_scripts {

// Whether `entry` of stream KEYS[1] is pending under `consumer` in `group`.
#define UMI_LUA_HOLDS                                                  \
  "local function holds(group, consumer, entry)\n"                     \
  "  local p = redis.call('XPENDING', KEYS[1], group, entry, entry, 1)\n" \
  "  return #p == 1 and p[1][2] == consumer\n"                         \
  "end\n"

const char* const kPublishResults =
    "local group, consumer, fallback, started, keep_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[8]\n"
    "local function unusable(e)\n"
    "  return string.find(e, 'WRONGTYPE', 1, true) or string.find(e, 'NOPERM', 1, true) or\n"
    "         string.find(e, \"can't access\", 1, true) or string.find(e, 'no permissions', 1, true)\n"
    "end\n"
    "-- What this consumer holds between the batch's first and last entry: one\n"
    "-- lookup for the batch instead of one per result.\n"
    "local mine = {}\n"
    "for _, p in ipairs(redis.call('XPENDING', KEYS[1], group, ARGV[5], ARGV[6], ARGV[7], consumer)) do\n"
    "  mine[p[1]] = true\n"
    "end\n"
    "local out, done = {}, {}\n"
    "for i = 9, #ARGV, 5 do\n"
    "  local entry, reply_to, body, kept, kept_body = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]\n"
    "  local code = 0\n"
    "  if mine[entry] then\n"
    "    code = 1\n"
    "    local added = redis.pcall('XADD', reply_to, '*', 'm', body)\n"
    "    if type(added) == 'table' and added.err then\n"
    "      code = added\n"
    "      if unusable(added.err) then\n"
    "        local moved = redis.pcall('XADD', fallback, '*', 'm', body, 'reply_to', reply_to, 'reason', added.err)\n"
    "        code = (type(moved) == 'table' and moved.err) and moved or 2\n"
    "      end\n"
    "    end\n"
    "    if type(code) == 'number' then\n"
    "      done[#done + 1] = entry\n"
    "      -- Kept for lookups by id (op: result), with the result it goes with.\n"
    "      if kept ~= '' and tonumber(keep_ms) > 0 then\n"
    "        redis.call('SET', kept, kept_body ~= '' and kept_body or body, 'PX', keep_ms)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  out[#out + 1] = code\n"
    "end\n"
    "if #done > 0 then\n"
    "  redis.call('XACK', KEYS[1], group, unpack(done))\n"
    "  redis.call('HDEL', started, unpack(done))\n"
    "end\n"
    "return out\n";

const char* const kRenewLeases =
    "#!lua flags=allow-oom\n" UMI_LUA_HOLDS
    "local lost = {}\n"
    "for i = 3, #ARGV do\n"
    "  if holds(ARGV[1], ARGV[2], ARGV[i]) then\n"
    "    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')\n"
    "  else\n"
    "    lost[#lost + 1] = ARGV[i]\n"
    "  end\n"
    "end\n"
    "return lost\n";

const char* const kGiveBack =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)\n"
    "if #p ~= 1 or p[1][2] ~= ARGV[2] then return 0 end\n"
    "-- The copy carries the deaths charged so far (its delivery count less\n"
    "-- this host's, plus what the entry carried), so a task given back on\n"
    "-- every drain still reaches max_deliveries.\n"
    "local charged = p[1][4] - 1\n"
    "local e = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])[1]\n"
    "for i = 1, e and #e[2] or 0, 2 do\n"
    "  if e[2][i] == 'd' then charged = charged + (tonumber(e[2][i + 1]) or 0) end\n"
    "end\n"
    "if charged > 0 then\n"
    "  redis.call('XADD', KEYS[1], '*', 'm', ARGV[4], 'd', charged)\n"
    "else\n"
    "  redis.call('XADD', KEYS[1], '*', 'm', ARGV[4])\n"
    "end\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])\n"
    "redis.call('HDEL', ARGV[5], ARGV[3])\n"
    "return 1\n";

const char* const kClaimLapsed =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], ARGV[4], ARGV[4], 1)\n"
    "if #p == 0 then return nil end\n"
    "-- Moves the farm's fence first (a failed write stops the script here, with\n"
    "-- nothing done): a host that publishes through a transaction watching it\n"
    "-- sees that an entry may have changed hands.\n"
    "redis.call('INCR', 'umi:fence')\n"
    "local entry\n"
    "local started = redis.call('HDEL', ARGV[5], ARGV[4]) == 1 or redis.call('HEXISTS', ARGV[5], '*' .. p[1][2]) == 1\n"
    "if started then\n"
    "  entry = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])[1]\n"
    "else\n"
    "  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'JUSTID')\n"
    "  entry = redis.call('XRANGE', KEYS[1], ARGV[4], ARGV[4])[1]\n"
    "  if not entry then redis.call('XACK', KEYS[1], ARGV[1], ARGV[4]) end\n"
    "end\n"
    "if not entry then return nil end\n"
    "local after = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[4], ARGV[4], 1)\n"
    "return {entry, after[1][4]}\n";

const char* const kHeartbeat =
    "#!lua flags=allow-oom\n"
    "local owner = redis.call('HGET', KEYS[1], 'consumer')\n"
    "if owner and owner ~= ARGV[1] then return 0 end\n"
    "-- The farm's tick, in the server's time: a gap in it is a time no host\n"
    "-- could beat (Redis frozen, or no host at all).\n"
    "local time = redis.call('TIME')\n"
    "local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)\n"
    "local tick = tonumber(redis.call('GET', 'umi:tick') or '0')\n"
    "if now - tick > tonumber(ARGV[4]) then redis.call('SET', 'umi:resumed', now) end\n"
    "redis.call('SET', 'umi:tick', now)\n"
    "local fields = {}\n"
    "for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end\n"
    "redis.call('HSET', KEYS[1], 'consumer', ARGV[1], unpack(fields))\n"
    "redis.call('HINCRBY', KEYS[1], 'beat', 1)\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "redis.call('HSET', 'umi:hosts-seen', string.sub(KEYS[1], 11), ARGV[3])\n"
    "return 1\n";

const char* const kDropConsumer =
    "#!lua flags=allow-oom\n"
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])\n"
    "if #p > 0 then return 0 end\n"
    "redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('HDEL', ARGV[3], '*' .. ARGV[2])\n"
    "return 1\n";

const char* const kTakeLevels =
    "local out, first = {}, 1\n"
    "for a = 3, #ARGV, 2 do\n"
    "  local streams, remaining = tonumber(ARGV[a]), tonumber(ARGV[a + 1])\n"
    "  for s = first, first + streams - 1 do\n"
    "    if remaining <= 0 then break end\n"
    "    local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', remaining, 'STREAMS', KEYS[s], '>')\n"
    "    if read then\n"
    "      out[#out + 1] = read[1]\n"
    "      remaining = remaining - #read[1][2]\n"
    "    end\n"
    "  end\n"
    "  first = first + streams\n"
    "end\n"
    "return out\n";

const char* const kPlanTake =
    "local out, first = {}, 1\n"
    "for a = 3, #ARGV, 2 do\n"
    "  local streams, remaining = tonumber(ARGV[a]), tonumber(ARGV[a + 1])\n"
    "  for s = first, first + streams - 1 do\n"
    "    local take = 0\n"
    "    if remaining > 0 then\n"
    "      local lag = false\n"
    "      for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[s])) do\n"
    "        if g[2] == ARGV[1] then\n"
    "          for f = 1, #g, 2 do\n"
    "            if g[f] == 'lag' then lag = g[f + 1] end\n"
    "          end\n"
    "        end\n"
    "      end\n"
    "      -- lag is nil (false here) when Redis cannot tell: this level may take it all\n"
    "      take = lag and math.min(lag, remaining) or remaining\n"
    "      remaining = remaining - take\n"
    "    end\n"
    "    out[#out + 1] = take\n"
    "  end\n"
    "  first = first + streams\n"
    "end\n"
    "return out\n";

#undef UMI_LUA_HOLDS

// The flow scripts (redis_flows.h). A flow's hash: reply_to, n (steps),
// left (steps not ended), t0 (opened, server ms), failure (the first), and
// per step index i: m:i its task, q:i its stream, a:i and n:i the indices
// it waits for and that wait for it, w:i how many of those it still waits
// for, k:i its name packed, uh:i the header of its upstream map, x:i its
// record if skipped, r:i its result once ended, o:i its output if ok;
// i:<name> its index.
#define UMI_LUA_FLOW_HELPERS                                                        \
  "local group, consumer, entry, started = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"    \
  "local flow = KEYS[2]\n"                                                          \
  "local function held()\n"                                                         \
  "  local p = redis.call('XPENDING', KEYS[1], group, entry, entry, 1)\n"           \
  "  return #p == 1 and p[1][2] == consumer\n"                                      \
  "end\n"                                                                           \
  "local function done(code)\n"                                                     \
  "  redis.call('XACK', KEYS[1], group, entry)\n"                                   \
  "  redis.call('HDEL', started, entry)\n"                                          \
  "  return code\n"                                                                 \
  "end\n"                                                                           \
  "local function indices(list)\n"                                                  \
  "  local out = {}\n"                                                              \
  "  for i in string.gmatch(list or '', '[^,]+') do out[#out + 1] = i end\n"        \
  "  return out\n"                                                                  \
  "end\n"

const char* const kOpenFlow =
    UMI_LUA_FLOW_HELPERS
    "if not held() then return 0 end\n"
    "if redis.call('EXISTS', flow) == 1 then return 2 end\n"
    "local last = 5 + 2 * tonumber(ARGV[5])\n"
    "for i = 6, last, 200 do\n"
    "  redis.call('HSET', flow, unpack(ARGV, i, math.min(i + 199, last)))\n"
    "end\n"
    "local time = redis.call('TIME')\n"
    "redis.call('HSET', flow, 't0', tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))\n"
    "for i = last + 1, #ARGV, 2 do\n"
    "  redis.call('XADD', ARGV[i], '*', 'm', ARGV[i + 1])\n"
    "end\n"
    "return done(1)\n";

const char* const kEndStep =
    UMI_LUA_FLOW_HELPERS
    "if not held() then return 0 end\n"
    "if redis.call('EXISTS', flow) == 0 then return done(1) end  -- the flow has its result already\n"
    "local step = redis.call('HGET', flow, 'i:' .. ARGV[5])\n"
    "if not step then return done(1) end  -- no such step: not the flow's own entry\n"
    "if redis.call('HSETNX', flow, 'r:' .. step, ARGV[6]) == 1 then\n"
    "  if ARGV[10] ~= '' and tonumber(ARGV[11]) > 0 then redis.call('SET', ARGV[10], ARGV[6], 'PX', ARGV[11]) end\n"
    "  local ended = 1\n"
    "  if ARGV[8] == '1' then\n"
    "    redis.call('HSET', flow, 'o:' .. step, ARGV[7])\n"
    "    for _, next in ipairs(indices(redis.call('HGET', flow, 'n:' .. step))) do\n"
    "      if redis.call('HINCRBY', flow, 'w:' .. next, -1) == 0 and redis.call('HEXISTS', flow, 'r:' .. next) == 0 then\n"
    "        local upstream = {redis.call('HGET', flow, 'uh:' .. next)}\n"
    "        for _, before in ipairs(indices(redis.call('HGET', flow, 'a:' .. next))) do\n"
    "          upstream[#upstream + 1] = redis.call('HGET', flow, 'k:' .. before)\n"
    "          upstream[#upstream + 1] = redis.call('HGET', flow, 'o:' .. before)\n"
    "        end\n"
    "        redis.call('XADD', redis.call('HGET', flow, 'q:' .. next), '*', 'm', redis.call('HGET', flow, 'm:' .. next),\n"
    "                   'u', table.concat(upstream))\n"
    "      end\n"
    "    end\n"
    "  else\n"
    "    redis.call('HSETNX', flow, 'failure', ARGV[9])\n"
    "    local skipping = indices(redis.call('HGET', flow, 'n:' .. step))\n"
    "    while #skipping > 0 do\n"
    "      local next = table.remove(skipping)\n"
    "      if redis.call('HSETNX', flow, 'r:' .. next, redis.call('HGET', flow, 'x:' .. next)) == 1 then\n"
    "        ended = ended + 1\n"
    "        for _, after in ipairs(indices(redis.call('HGET', flow, 'n:' .. next))) do skipping[#skipping + 1] = after end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if redis.call('HINCRBY', flow, 'left', -ended) > 0 then return done(1) end\n"
    "elseif tonumber(redis.call('HGET', flow, 'left')) > 0 then\n"
    "  return done(1)  -- recorded already (a copy of the entry)\n"
    "end\n"
    "-- Every step ended: the flow's one result, written with the last step's\n"
    "-- end. Its map is put together from bytes the hosts packed (head: v, id\n"
    "-- and plugin; sh: the steps map's header; each step's name and result)\n"
    "-- and scalars cmsgpack packs.\n"
    "local host, kept, keep_ms, fallback = ARGV[12], ARGV[13], tonumber(ARGV[11]), ARGV[14]\n"
    "local function header(n)\n"
    "  if n < 16 then return string.char(0x80 + n) end\n"
    "  return string.char(0xde, math.floor(n / 256), n % 256)\n"
    "end\n"
    "local pack = cmsgpack.pack\n"
    "local time = redis.call('TIME')\n"
    "local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000\n"
    "local t0 = tonumber(redis.call('HGET', flow, 't0'))\n"
    "local failure = redis.call('HGET', flow, 'failure')\n"
    "local cancelled = redis.call('HEXISTS', flow, 'cancelled') == 1\n"
    "local status = cancelled and 'cancelled' or (failure and 'error' or 'ok')\n"
    "local parts = {redis.call('HGET', flow, 'head'), pack('status'), pack(status),\n"
    "               pack('output'), redis.call('HGET', flow, 'sh')}\n"
    "for s = 0, tonumber(redis.call('HGET', flow, 'n')) - 1 do\n"
    "  parts[#parts + 1] = redis.call('HGET', flow, 'k:' .. s)\n"
    "  parts[#parts + 1] = redis.call('HGET', flow, 'r:' .. s)\n"
    "end\n"
    "if cancelled then\n"
    "  parts[#parts + 1] = pack('error') .. string.char(0x82) .. pack('code') .. pack('cancelled') ..\n"
    "                      pack('message') .. pack('the flow was cancelled by request')\n"
    "elseif failure then\n"
    "  parts[#parts + 1] = pack('error') .. string.char(0x82) .. pack('code') .. pack('step_failed') ..\n"
    "                      pack('message') .. pack(failure)\n"
    "end\n"
    "parts[#parts + 1] = pack('host') .. pack(host) .. pack('queued_ms') .. pack(0) .. pack('run_ms') ..\n"
    "                    pack(now - t0) .. pack('started_at') .. pack(t0 / 1000) .. pack('finished_at') .. pack(now / 1000)\n"
    "local fields = status == 'ok' and 10 or 11\n"
    "local body = header(fields) .. table.concat(parts)\n"
    "local reply_to = redis.call('HGET', flow, 'reply_to')\n"
    "local code = 1\n"
    "local added = redis.pcall('XADD', reply_to, '*', 'm', body)\n"
    "if type(added) == 'table' and added.err then\n"
    "  if not (string.find(added.err, 'WRONGTYPE', 1, true) or string.find(added.err, 'NOPERM', 1, true)) then\n"
    "    return added  -- refused (OOM, ...): written before it, the step's end stands; retried, it ends the flow\n"
    "  end\n"
    "  redis.call('XADD', fallback, '*', 'm', body, 'reply_to', reply_to, 'reason', added.err)\n"
    "  code = 2\n"
    "end\n"
    "if kept ~= '' and keep_ms > 0 then\n"
    "  local fingerprint = redis.call('HGET', flow, 'fp')\n"
    "  if fingerprint then body = header(fields + 1) .. table.concat(parts) .. fingerprint end\n"
    "  redis.call('SET', kept, body, 'PX', keep_ms)\n"
    "end\n"
    "redis.call('DEL', flow)\n"
    "return done(code)\n";

const char* const kCancelFlow =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'cancelled', 1)\n"
    "-- Steps not yet released end cancelled now; those on a stream or running\n"
    "-- end as they end, and release nothing (their dependents ended here).\n"
    "local ended = 0\n"
    "for s = 0, tonumber(redis.call('HGET', KEYS[1], 'n')) - 1 do\n"
    "  if tonumber(redis.call('HGET', KEYS[1], 'w:' .. s)) > 0 and\n"
    "     redis.call('HSETNX', KEYS[1], 'r:' .. s, redis.call('HGET', KEYS[1], 'c:' .. s)) == 1 then\n"
    "    ended = ended + 1\n"
    "  end\n"
    "end\n"
    "redis.call('HINCRBY', KEYS[1], 'left', -ended)\n"
    "return 1\n";

#undef UMI_LUA_FLOW_HELPERS

}  // namespace umi::redis_scripts
