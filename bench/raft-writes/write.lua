-- write.lua: the wrk script of bench/raft-writes/run.sh. Every request is one small write that
-- overwrites a single record with a new value, so both systems do the same work per request:
--   BENCH_TARGET=etcd  POST /v3/kv/put        {"key": base64("bench"), "value": base64("w<thread>-<n>")}
--   BENCH_TARGET=hci   PUT  /v1/tenants/bench {"description": "w<thread>-<n>"}  (Bearer BENCH_TOKEN)
-- Any non-2xx answer counts as an error. done() prints one machine-readable line:
--   BENCH_RESULT requests=N ok=N seconds=S writes_per_s=X p50_ms=X p99_ms=X non2xx=N socket_errors=N
-- (writes_per_s counts only 2xx answers) and, when there were refusals, one BENCH_SAMPLE_ERROR line.

local target = os.getenv("BENCH_TARGET") or "etcd"
local token = os.getenv("BENCH_TOKEN") or ""
local threads = {}

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local d1 = math.floor(n / 262144) % 64
    local d2 = math.floor(n / 4096) % 64
    local d3 = math.floor(n / 64) % 64
    local d4 = n % 64
    out[#out + 1] = alphabet:sub(d1 + 1, d1 + 1) .. alphabet:sub(d2 + 1, d2 + 1)
      .. (b and alphabet:sub(d3 + 1, d3 + 1) or "=") .. (c and alphabet:sub(d4 + 1, d4 + 1) or "=")
  end
  return table.concat(out)
end

local etcd_key = b64("bench")

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  non2xx = 0
  sample_error = ""
  headers = { ["Content-Type"] = "application/json" }
  if target == "etcd" then
    method, path = "POST", "/v3/kv/put"
  elseif target == "hci" then
    method, path = "PUT", "/v1/tenants/bench"
    headers["Authorization"] = "Bearer " .. token
  else
    error("BENCH_TARGET must be etcd or hci, not " .. target)
  end
end

function request()
  counter = counter + 1
  local value = string.format("w%d-%d", tid, counter)
  local body
  if target == "etcd" then
    body = '{"key":"' .. etcd_key .. '","value":"' .. b64(value) .. '"}'
  else
    body = '{"description":"' .. value .. '"}'
  end
  return wrk.format(method, path, headers, body)
end

function response(status, hdrs, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if sample_error == "" then
      sample_error = status .. " " .. string.sub(body or "", 1, 200):gsub("%s+", " ")
    end
  end
end

function done(summary, latency, requests)
  local refused, sample = 0, ""
  for _, t in ipairs(threads) do
    refused = refused + (t:get("non2xx") or 0)
    local s = t:get("sample_error")
    if sample == "" and s then sample = s end
  end
  local e = summary.errors
  local socket_errors = e.connect + e.read + e.write + e.timeout
  local seconds = summary.duration / 1e6
  local ok = summary.requests - refused
  io.write(string.format(
    "BENCH_RESULT requests=%d ok=%d seconds=%.3f writes_per_s=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d socket_errors=%d\n",
    summary.requests, ok, seconds, ok / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, refused, socket_errors))
  if sample ~= "" then
    io.write("BENCH_SAMPLE_ERROR " .. sample .. "\n")
  end
end
