"""Lua scripts of the Redis backend: each one is a single atomic step of the store contract.

Times come from the Redis server (`TIME`), so pods with skewed clocks agree on expiries.
Every key a script touches is built in Python (`keys.py`) and declared in KEYS, all in one
hash slot, so the scripts run on Redis Cluster as on a standalone Redis. Where the keys
depend on data (the sets of a task's old values, the jobs that are active), the caller reads
that data first and the script checks it is still current, answering -1 when it is not.
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: task uid counter, last task stamp. Returns {uid, stamp}: the stamp is the server's
# clock in microseconds, but never below the previous one (a clock step back), so stamps
# follow uid order. '%.0f' keeps all digits (a double holds today's microseconds exactly).
NEXT_TASK_STAMP = """
local uid = redis.call('INCR', KEYS[1]) - 1
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last > now then now = last end
local stamp = string.format('%.0f', now)
redis.call('SET', KEYS[2], stamp)
return {uid, stamp}
"""

# KEYS: lease. ARGV: owner, ttl_ms. Free or expired (the key is gone) -> take it; held by
# `owner` -> renew; held by someone else -> 0.
LEASE_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: lease. ARGV: owner, ttl_ms.
LEASE_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: lease. ARGV: owner.
LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: lease, phase. ARGV: owner, state. The fence: a holder that lost its lease (paused
# past the TTL, partitioned) can never overwrite the phase its successor wrote.
PUT_PHASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

_PRUNE_PEERS = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #gone, 500 do
  redis.call('HDEL', KEYS[1], unpack(gone, i, math.min(i + 499, #gone)))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
"""

# KEYS: peers, peer expiry. ARGV: pod id, info, ttl_ms.
PEER_HEARTBEAT = (
    _NOW
    + _PRUNE_PEERS
    + """
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
)

# KEYS: peers, peer expiry. Returns the flat HGETALL of the live peers.
LIVE_PEERS = _NOW + _PRUNE_PEERS + "return redis.call('HGETALL', KEYS[1])\n"

# KEYS: one index's fields hash (`Keys.fields`). ARGV: names in first-seen order; each one
# unknown gets the next position. Returns the whole hash.
ADD_FIELDS = """
for _, name in ipairs(ARGV) do
  if redis.call('HEXISTS', KEYS[1], 'f:' .. name) == 0 then
    redis.call('HSET', KEYS[1], 'f:' .. name, redis.call('HINCRBY', KEYS[1], 'n', 1))
  end
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: topology. ARGV: expected epoch, body. Returns the new epoch or nil.
PUT_TOPOLOGY = """
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if epoch ~= tonumber(ARGV[1]) then return false end
redis.call('HSET', KEYS[1], 'epoch', epoch + 1, 'body', ARGV[2])
return epoch + 1
"""

# KEYS: task hash, all-tasks set, bodies, then for each field of keys.TASK_INDEXED the set of
# its old value, then the set of its new value, then the three date sets of keys.TASK_DATES.
# ARGV: mode ('create' | 'save'), uid, body, the five old values the caller read, the five
# new values ('' = none), the three date scores ('' = none). The caller read the old values
# to name their sets: -1 when they changed since (read again), 0 when 'save' finds the task
# missing or finished (it never touches those), 1 when written.
PUT_TASK = """
local uid = ARGV[2]
local names = {'status', 'type', 'index', 'batch', 'canceled'}
local old = redis.call('HMGET', KEYS[1], unpack(names))
for i = 1, 5 do
  if (old[i] or '') ~= ARGV[3 + i] then return -1 end
end
if ARGV[1] == 'save' then
  local s = old[1]
  if not s or s == 'succeeded' or s == 'failed' or s == 'canceled' then return 0 end
end
local fields = {}
for i, name in ipairs(names) do
  local was, new = ARGV[3 + i], ARGV[8 + i]
  if was ~= '' and was ~= new then redis.call('ZREM', KEYS[3 + i], uid) end
  if new ~= '' then redis.call('ZADD', KEYS[8 + i], uid, uid) end
  fields[#fields + 1] = name
  fields[#fields + 1] = new
end
for i = 1, 3 do
  local key, score = KEYS[13 + i], ARGV[13 + i]
  if score == '' then redis.call('ZREM', key, uid) else redis.call('ZADD', key, score, uid) end
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HSET', KEYS[3], uid, ARGV[3])
redis.call('ZADD', KEYS[2], uid, uid)
return 1
"""

# Builds the sorted set of the uids matching a query (score = uid) out of the per-value
# sets with ZUNIONSTORE / ZRANGESTORE / ZINTERSTORE, so filtering thousands of tasks stays in
# Redis' C code. The spec names every key by its position in KEYS: `all`, `sets` (groups of
# per-value sets), `dates` ([date set, low, high]) and `scratch`, as many temporary keys as
# the query may need; `cleanup` deletes the ones it made.
_MATCHING = """
local spec = cjson.decode(ARGV[1])
local made = 0
local function scratch()
  made = made + 1
  local key = KEYS[spec.scratch[made]]
  -- A script that failed half-way may have left one behind.
  redis.call('DEL', key)
  return key
end
local function cleanup()
  for i = 1, made do redis.call('DEL', KEYS[spec.scratch[i]]) end
end
local function matching()
  local inputs, weights = {}, {}
  for _, group in ipairs(spec.sets) do
    local key
    if #group == 1 then
      key = KEYS[group[1]]
    else
      key = scratch()
      if #group > 1 then
        local args = {key, #group}
        for _, i in ipairs(group) do args[#args + 1] = KEYS[i] end
        redis.call('ZUNIONSTORE', unpack(args))
      end
    end
    inputs[#inputs + 1] = key
    weights[#weights + 1] = 1
  end
  if spec.uids ~= cjson.null then
    local key = scratch()
    local args = {}
    for _, uid in ipairs(spec.uids) do
      args[#args + 1] = uid
      args[#args + 1] = uid
      if #args >= 1000 then
        redis.call('ZADD', key, unpack(args))
        args = {}
      end
    end
    if #args > 0 then redis.call('ZADD', key, unpack(args)) end
    inputs[#inputs + 1] = key
    weights[#weights + 1] = 1
  end
  -- Every task is in `all`: it only joins when nothing else scores by uid.
  if #inputs == 0 then
    inputs[1] = KEYS[spec.all]
    weights[1] = 1
  end
  -- Date sets score by date: weight 0 keeps the uid as the score of the intersection.
  for _, range in ipairs(spec.dates) do
    local key = scratch()
    redis.call('ZRANGESTORE', key, KEYS[range[1]], range[2], range[3], 'BYSCORE')
    inputs[#inputs + 1] = key
    weights[#weights + 1] = 0
  end
  if #inputs == 1 then return inputs[1] end
  local out = scratch()
  local args = {out, #inputs}
  for _, key in ipairs(inputs) do args[#args + 1] = key end
  args[#args + 1] = 'WEIGHTS'
  for _, w in ipairs(weights) do args[#args + 1] = w end
  args[#args + 1] = 'AGGREGATE'
  args[#args + 1] = 'MAX'
  redis.call('ZINTERSTORE', unpack(args))
  return out
end
"""

# KEYS: as the spec names them, with the task bodies at spec.bodies. ARGV: spec (JSON: all,
# bodies, scratch, sets, uids, dates, from, reverse, limit). Returns {total, next uid or nil,
# body...}.
LIST_TASKS = (
    _MATCHING
    + """
local set = matching()
local total = redis.call('ZCARD', set)
local page
if spec.reverse then
  local low = spec.from == cjson.null and '-inf' or spec.from
  page = redis.call('ZRANGE', set, low, '+inf', 'BYSCORE', 'LIMIT', 0, spec.limit + 1)
else
  local high = spec.from == cjson.null and '+inf' or spec.from
  page = redis.call('ZRANGE', set, high, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, spec.limit + 1)
end
local out = {total, page[spec.limit + 1] or false}
for i = 1, math.min(#page, spec.limit) do
  out[#out + 1] = redis.call('HGET', KEYS[spec.bodies], page[i])
end
cleanup()
return out
"""
)

# KEYS and ARGV as for LIST_TASKS. Returns the uids of every matching task.
MATCHING_TASKS = (
    _MATCHING
    + """
local uids = redis.call('ZRANGE', matching(), 0, -1)
cleanup()
return uids
"""
)

# KEYS: all-tasks set, bodies, the three date sets, then per task its hash followed by the
# sets of its indexed values. ARGV: per task its uid and how many value sets follow its hash.
# The caller read the values of finished tasks, which never change; a task deleted since is
# skipped. Returns the uids deleted.
DELETE_TASKS = """
local deleted = {}
local at = 6
for a = 1, #ARGV, 2 do
  local uid, sets = ARGV[a], tonumber(ARGV[a + 1])
  if redis.call('HEXISTS', KEYS[2], uid) == 1 then
    for j = 1, sets do redis.call('ZREM', KEYS[at + j], uid) end
    for j = 3, 5 do redis.call('ZREM', KEYS[j], uid) end
    redis.call('ZREM', KEYS[1], uid)
    redis.call('HDEL', KEYS[2], uid)
    redis.call('DEL', KEYS[at])
    deleted[#deleted + 1] = uid
  end
  at = at + 1 + sets
end
return deleted
"""

# KEYS: job, slots, active jobs, turn counter, depth. ARGV: job id, kind, payload, chunk...
ENQUEUE_JOB = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = #ARGV - 3
redis.call('HSET', KEYS[1], 'kind', ARGV[2], 'payload', ARGV[3], 'total', n, 'done', 0)
for first = 0, n - 1, 500 do
  local last = math.min(first + 499, n - 1)
  local fields, slots = {}, {}
  for i = first, last do
    fields[#fields + 1] = 'c:' .. i
    fields[#fields + 1] = ARGV[4 + i]
    slots[#slots + 1] = i
    slots[#slots + 1] = i
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('ZADD', KEYS[2], unpack(slots))
end
if n > 0 then
  redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), ARGV[1])
  redis.call('INCRBY', KEYS[5], n)
end
return 1
"""

# KEYS: active jobs, turn counter, then the hash and slots of each job the caller found
# active. ARGV: owner, ttl_ms, kinds JSON ('' = any), then those job ids. Walks the jobs from
# the one claimed least recently; the claimed job moves to the back, so concurrent jobs
# interleave. Returns {job, kind, index, payload, chunk, cursor or nil, attempt}, nil when
# nothing is claimable, or -1 when nothing was claimable among the jobs the caller named but
# a job it did not name is active now (read the active jobs again).
CLAIM_CHUNK = (
    _NOW
    + """
local kinds = nil
if ARGV[3] ~= '' then
  kinds = {}
  for _, kind in ipairs(cjson.decode(ARGV[3])) do kinds[kind] = true end
end
local named = {}
for i = 4, #ARGV do named[ARGV[i]] = 2 * (i - 4) + 3 end
local unnamed = false
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local at = named[id]
  if not at then
    unnamed = true
  else
    local job, slots = KEYS[at], KEYS[at + 1]
    if kinds == nil or kinds[redis.call('HGET', job, 'kind')] then
      local slot = redis.call('ZRANGE', slots, '-inf', now, 'BYSCORE', 'LIMIT', 0, 1)[1]
      if slot then
        redis.call('ZADD', slots, now + tonumber(ARGV[2]), slot)
        redis.call('HSET', job, 'o:' .. slot, ARGV[1])
        local attempt = redis.call('HINCRBY', job, 'a:' .. slot, 1)
        redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), id)
        local f = redis.call('HMGET', job, 'kind', 'payload', 'c:' .. slot, 'u:' .. slot)
        return {id, f[1], slot, f[2], f[3], f[4], attempt}
      end
    end
  end
end
if unnamed then return -1 end
return false
"""
)

# KEYS: job, slots. ARGV: index, owner, ttl_ms, cursor ('' = keep). A claim that expired but
# was not taken over is still the owner's.
HEARTBEAT_CHUNK = (
    _NOW
    + """
if redis.call('HGET', KEYS[1], 'o:' .. ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'u:' .. ARGV[1], ARGV[4]) end
return 1
"""
)

# KEYS: job, slots, active jobs, depth. ARGV: job id, index, owner.
COMPLETE_CHUNK = """
local i = ARGV[2]
if redis.call('HGET', KEYS[1], 'o:' .. i) ~= ARGV[3] then return 0 end
redis.call('ZREM', KEYS[2], i)
redis.call('HDEL', KEYS[1], 'o:' .. i, 'u:' .. i, 'c:' .. i, 'a:' .. i)
redis.call('HINCRBY', KEYS[1], 'done', 1)
redis.call('DECR', KEYS[4])
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('ZREM', KEYS[3], ARGV[1]) end
return 1
"""

# KEYS: job, slots. Returns {total, done, live claims} or nil.
JOB_PROGRESS = (
    _NOW
    + """
local f = redis.call('HMGET', KEYS[1], 'total', 'done')
if not f[1] then return false end
return {tonumber(f[1]), tonumber(f[2]), redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')}
"""
)

# KEYS: operation hash, running key of its scope, operations order, creation counter. ARGV:
# id, then the record's field/value pairs. Returns nil when created, else the id that is in
# the way: the same id (never overwritten) or the running holder of the scope.
CREATE_OPERATION = """
if redis.call('EXISTS', KEYS[1]) == 1 then return ARGV[1] end
local holder = redis.call('GET', KEYS[2])
if holder then return holder end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), ARGV[1])
return false
"""

# KEYS: operation hash, running key of the scope the caller read from it. ARGV: id, that
# scope, new state, then field/value pairs. Only a running operation changes; leaving
# 'running' frees the stored scope. A scope never changes once created, so -1 (the stored
# scope is another: read it again) only answers a record replaced since the read.
SAVE_OPERATION = """
local f = redis.call('HMGET', KEYS[1], 'state', 'scope')
if f[1] ~= 'running' then return 0 end
if f[2] ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[1], 'state', ARGV[3], unpack(ARGV, 4))
if ARGV[3] ~= 'running' then
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
end
return 1
"""

# KEYS: operation hash. Returns the flat HGETALL after the request, or nil if unknown.
REQUEST_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if state == 'running' then redis.call('HSET', KEYS[1], 'cancel_requested', '1') end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: the hashes of the operations to list. Returns one flat HGETALL per operation that
# exists, in KEYS order.
LIST_OPERATIONS = """
local out = {}
for _, key in ipairs(KEYS) do
  local fields = redis.call('HGETALL', key)
  if #fields > 0 then out[#out + 1] = fields end
end
return out
"""

# KEYS: peers, peer expiry. ARGV: pod id.
PEER_LEAVE = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""

# KEYS: hint seq, hint nodes, hint flags, the node's queue, the node's bodies. ARGV: node,
# blob, max per node. Returns the new hint's id, or false when it did not fit (the node's
# hints are dropped and the node flagged; a flagged node only counts what it drops).
PUT_HINT = """
local node = ARGV[1]
redis.call('SADD', KEYS[2], node)
if redis.call('HGET', KEYS[3], 'overflowed:' .. node) == '1' then
  redis.call('HINCRBY', KEYS[3], 'dropped:' .. node, 1)
  return false
end
local held = redis.call('ZCARD', KEYS[4])
if held >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[4], KEYS[5])
  redis.call('HSET', KEYS[3], 'overflowed:' .. node, '1')
  redis.call('HINCRBY', KEYS[3], 'dropped:' .. node, held + 1)
  return false
end
local id = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[4], id, id)
redis.call('HSET', KEYS[5], id, ARGV[2])
return id
"""

# KEYS: the node's queue, the node's bodies. ARGV: hint ids. Returns how many existed.
DELETE_HINTS = """
local gone = 0
for i = 1, #ARGV do
  gone = gone + redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
end
return gone
"""

# KEYS: hint flags. ARGV: node. Returns 1 if the node was flagged.
CLEAR_HINT_OVERFLOW = """
local was = redis.call('HDEL', KEYS[1], 'overflowed:' .. ARGV[1])
redis.call('HDEL', KEYS[1], 'dropped:' .. ARGV[1])
return was
"""
