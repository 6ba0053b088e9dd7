-- wrk script of scripts/bench.sh: every request carries an X-API-KEY drawn
-- from KEYS client keys, and the threads are spread over several nodes.
--
-- Environment:
--   BENCH_KEYS    number of client keys (default 10000)
--   BENCH_PREFIX  key prefix (default "client-"); keys are <prefix>0 .. <prefix>K-1
--   BENCH_ADDRS   comma-separated host:port list; thread i sends to
--                 address i mod n (default: the URL's address only)
--
-- done() prints one line for the script to parse, latencies in µs:
--   RESULT rps=.. p50_us=.. p99_us=.. requests=.. s2xx=.. s429=.. other=.. sockerr=..

local targets = {}
local all = {}

local function addresses()
  local out = {}
  for hp in string.gmatch(os.getenv("BENCH_ADDRS") or "", "[^,%s]+") do
    local host, port = string.match(hp, "^(.*):(%d+)$")
    if host == nil then
      error("BENCH_ADDRS: want host:port, got " .. hp)
    end
    local found = wrk.lookup(host, port)
    if found == nil or #found == 0 then
      error("BENCH_ADDRS: cannot resolve " .. hp)
    end
    out[#out + 1] = found[1]
  end
  return out
end

-- setup runs once per thread, in the main Lua state, before the threads start.
function setup(thread)
  if #all == 0 then
    targets = addresses()
  end
  local n = #all
  if #targets > 0 then
    thread.addr = targets[n % #targets + 1]
  end
  thread:set("index", n)
  all[n + 1] = thread
end

-- The rest runs in each thread's own Lua state.
function init(args)
  local k = tonumber(os.getenv("BENCH_KEYS") or "") or 10000
  local prefix = os.getenv("BENCH_PREFIX") or "client-"
  local me = index or 0
  -- Pre-render every request once: request() then only picks one.
  prepared = {}
  for i = 0, k - 1 do
    prepared[i + 1] = wrk.format("GET", nil, { ["X-API-KEY"] = prefix .. i }, nil)
  end
  nkeys = k
  -- Each thread has its own generator, seeded apart.
  math.randomseed(os.time() + me * 7919)
  n2xx, n429, nother = 0, 0, 0
end

function request()
  return prepared[math.random(nkeys)]
end

function response(status, headers, body)
  if status == 429 then
    n429 = n429 + 1
  elseif status >= 200 and status < 300 then
    n2xx = n2xx + 1
  else
    nother = nother + 1
  end
end

function done(summary, latency, requests)
  local s2xx, s429, other = 0, 0, 0
  for _, t in ipairs(all) do
    s2xx = s2xx + (tonumber(t:get("n2xx")) or 0)
    s429 = s429 + (tonumber(t:get("n429")) or 0)
    other = other + (tonumber(t:get("nother")) or 0)
  end
  local e = summary.errors
  local seconds = summary.duration / 1000000
  io.write(string.format(
    "RESULT rps=%.0f p50_us=%d p99_us=%d requests=%d s2xx=%d s429=%d other=%d sockerr=%d\n",
    summary.requests / seconds, latency:percentile(50), latency:percentile(99),
    summary.requests, s2xx, s429, other, e.connect + e.read + e.write + e.timeout))
end
