-- wrk script for bench/run.py: POSTs photos to a predict endpoint and prints one JSON line.
--
-- Settings come from the environment (wrk passes no arguments to init in a usable way for all):
--   BENCH_FILES  comma-separated JPEG paths, sent in turn
--   BENCH_STYLE  "multipart" (field BENCH_FIELD, plus a `text` field when BENCH_TEXT is set) or
--                "raw" (the bytes as the body, Content-Type image/jpeg: TorchServe's form)
--   BENCH_MODE   "uncached": every request's image bytes are new (a unique tail after the JPEG's
--                end marker, which decoders ignore), so no cache can answer it; "cached": the
--                same few bodies again and again
--   BENCH_RUN    a token unique to this wrk run, in every uncached tail: runs do not repeat bytes
-- Each wrk thread has its own Lua state: the tail carries the thread's number too.

local counter = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  images = {}
  for path in string.gmatch(os.getenv("BENCH_FILES"), "[^,]+") do
    table.insert(images, read(path))
  end
  style = os.getenv("BENCH_STYLE") or "multipart"
  uncached = os.getenv("BENCH_MODE") == "uncached"
  run = os.getenv("BENCH_RUN") or tostring(os.time())
  local field, text = os.getenv("BENCH_FIELD") or "image", os.getenv("BENCH_TEXT")
  local boundary = "foodapibench7d3f"
  if style == "multipart" then
    headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary }
    head = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. field ..
      "\"; filename=\"photo.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    tail = "\r\n"
    if text and text ~= "" then
      tail = tail .. "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n" .. text .. "\r\n"
    end
    tail = tail .. "--" .. boundary .. "--\r\n"
  else
    headers = { ["Content-Type"] = "image/jpeg" }
    head, tail = "", ""
  end
  statuses = {}
  hits = 0
end

function request()
  counter = counter + 1
  local image = images[(counter % #images) + 1]
  if uncached then
    image = image .. string.format("bench %s %d %d", run, thread_id, counter)
  end
  return wrk.format("POST", nil, headers, head .. image .. tail)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if string.find(body, '"cache_hit":%s*true') then
    hits = hits + 1
  end
end

function done(summary, latency, requests)
  local by_status, hit_total = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + n
    end
    hit_total = hit_total + thread:get("hits")
  end
  local parts = {}
  for status, n in pairs(by_status) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_s":%.3f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,' ..
    '"cache_hits":%d,"statuses":{%s},"socket_errors":%d}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    hit_total, table.concat(parts, ","), e.connect + e.read + e.write + e.timeout))
end
