-- create.lua: the wrk script of bench/placement-e2e/run.sh. Every request creates one VM (stopped,
-- so nothing boots) through POST /v1/vms: the member plans its placement, commits the decision
-- through Raft, and the state machine checks it again before it is applied.
--   BENCH_TOKEN  the admin token      BENCH_RUN  a prefix that keeps VM names unique across runs
-- done() prints raft-writes' BENCH_RESULT line (writes_per_s = placements/s, 2xx answers only).

-- response() and done() (the BENCH_RESULT line) are raft-writes' own: write.lua is loaded first
-- (its path in BENCH_WRITE_LUA) and this file replaces only init and request.
dofile(os.getenv("BENCH_WRITE_LUA"))

local token = os.getenv("BENCH_TOKEN") or ""
local run = os.getenv("BENCH_RUN") or "r"

function init(args)
  counter = 0
  non2xx = 0
  sample_error = ""
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"name":"%s-%d-%d","tenant":"bench","vcpus":1,"memory_mib":256,"power":"stopped"}', run, tid, counter)
  return wrk.format("POST", "/v1/vms", headers, body)
end
