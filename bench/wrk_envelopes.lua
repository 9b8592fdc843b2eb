-- one envelope per request, distinct request ids per run, thread and request; counts answers
local missions = {}
for line in io.lines(os.getenv("ARKA_BENCH_MISSIONS")) do missions[#missions + 1] = line end
local kind, prefix, token = os.getenv("ARKA_BENCH_KIND"), os.getenv("ARKA_BENCH_PREFIX"), os.getenv("ARKA_BENCH_TOKEN")
local threads = {}
setup = function(thread)
  thread:set("tid", #threads + 1)
  threads[#threads + 1] = thread
end
init = function()
  counter, ok, replayed, failed = 0, 0, 0, 0
  math.randomseed(tid * 7919 + #prefix)
end
request = function()
  counter = counter + 1
  local m = missions[math.random(#missions)]
  local rid = prefix .. "-" .. tid .. "-" .. counter
  local body
  if kind == "write" then
    body = '{"op":"HCM_APPEND_JOURNAL","request_id":"' .. rid .. '","caller":{"type":"agent","id":"bench","roles":["writer"]},'
      .. '"payload":{"mission_id":"' .. m .. '","entry":{"author_type":"agent","author_id":"bench","entry_type":"note",'
      .. '"message":"wrk entry ' .. rid .. ': progress noted, next step agreed."}}}'
  else
    body = '{"op":"HCM_GET_MISSION_CONTEXT","request_id":"' .. rid .. '","caller":{"type":"agent","id":"bench","roles":["writer"]},'
      .. '"payload":{"mission_id":"' .. m .. '"}}'
  end
  return wrk.format("POST", "/v1/hcm/execute", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
response = function(status, headers, body)
  if status == 200 and body:find('"status":"ok"', 1, true) then
    if body:find('"replayed":true', 1, true) then replayed = replayed + 1 else ok = ok + 1 end
  else
    failed = failed + 1
  end
end
done = function(summary, latency, requests)
  local o, r, f = 0, 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); r = r + t:get("replayed"); f = f + t:get("failed") end
  io.write(string.format('ARKA-JSON {"ok":%d,"replayed":%d,"failed":%d,"socket_errors":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d}\n',
    o, r, f, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
