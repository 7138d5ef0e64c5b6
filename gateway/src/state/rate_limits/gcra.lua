-- One stage of a request's rate limits, decided and spent in one step:
-- GCRA as the memory store (governor) computes it, for every quota of the
-- stage at once, on Redis' clock (so every gateway shares one clock).
--
-- KEYS[i]      the theoretical arrival time (TAT, microseconds) of quota i
-- ARGV[2i-1]   quota i's emission interval t: window / count, microseconds
-- ARGV[2i]     quota i's count (its burst)
--
-- Returns {allowed, remaining_1, wait_1, remaining_2, wait_2, ...}:
-- allowed is 1 when every quota allows the request, and then one cell of
-- each was spent (each key expires when its state is fresh again, at most
-- one window later); otherwise nothing was written. remaining_i is what
-- quota i has left (0 when it refuses), wait_i the microseconds until it
-- allows a request (0 when it does).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local out = {0}
local next_tats = {}
local refused = false
for i = 1, #KEYS do
  local t = tonumber(ARGV[2 * i - 1])
  local tau = t * (tonumber(ARGV[2 * i]) - 1)
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  local earliest = tat - tau
  if now < earliest then
    refused = true
    out[2 * i] = 0
    out[2 * i + 1] = earliest - now
  else
    local next_tat = math.max(tat, now) + t
    next_tats[i] = next_tat
    out[2 * i] = math.floor(math.min(now + tau + t - next_tat, tau + t) / t)
    out[2 * i + 1] = 0
  end
end
if refused then
  -- Nothing is spent: the quotas that allowed it keep the cell they
  -- would have given.
  for i = 1, #KEYS do
    if next_tats[i] then
      out[2 * i] = out[2 * i] + 1
    end
  end
  return out
end
for i = 1, #KEYS do
  local ttl = math.max(1, math.ceil((next_tats[i] - now) / 1000))
  redis.call('SET', KEYS[i], string.format('%d', next_tats[i]), 'PX', ttl)
end
out[1] = 1
return out
