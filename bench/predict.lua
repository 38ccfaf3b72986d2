-- wrk script for bench/run.py: POSTs photos to a predict endpoint and prints one JSON line.
--
-- Settings come from the environment (wrk passes no arguments to init in a usable way for all):
--   BENCH_FILES  comma-separated JPEG paths, sent in turn
--   BENCH_STYLE  "multipart" (field BENCH_FIELD, plus a `text` field when BENCH_TEXT is set),
--                "raw" (the bytes as the body, Content-Type image/jpeg: TorchServe's form),
--                "json" (POST /predict's {"image": base64}), "v2json" (the Open Inference
--                Protocol's infer, the image base64 in `data`) or "v2binary" (its binary data
--                extension: the JSON, then the image's raw bytes)
--   BENCH_MODE   "uncached": every request's image bytes are new (a unique tail after the JPEG's
--                end marker, which decoders ignore), so no cache can answer it; "cached": the
--                same few bodies again and again
--   BENCH_RUN    a token unique to this wrk run, in every uncached tail: runs do not repeat bytes
--   BENCH_CONNECTION  "close": every request on a new connection (Connection: close), so that a
--                server of several processes sharing one listening socket gets its load spread
--                over them (with keep-alive, each of wrk's connections stays with the process that
--                accepted it, and one process may hold most of them)
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
  elseif style == "raw" then
    headers = { ["Content-Type"] = "image/jpeg" }
    head, tail = "", ""
  else
    -- Base64 is computed once per photo: each is padded to a multiple of 3 bytes (after the
    -- JPEG's end, where decoders do not look), so base64(photo .. tail) is base64(photo) ..
    -- base64(tail) and an uncached request encodes only its short tail.
    encoded = {}
    for i, image in ipairs(images) do
      images[i] = image .. string.rep(" ", (3 - #image % 3) % 3)
      encoded[i] = base64(images[i])
    end
  end
  if os.getenv("BENCH_CONNECTION") == "close" then
    headers = headers or {}
    headers["Connection"] = "close"
    close = true
  end
  statuses = {}
  hits = 0
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function base64(data)
  local out = {}
  for i = 1, #data, 3 do
    local a, b, c = string.byte(data, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local function char(shift)
      local k = math.floor(n / shift) % 64 + 1
      return B64:sub(k, k)
    end
    out[#out + 1] = char(262144) .. char(4096) .. (b and char(64) or "=") .. (c and char(1) or "=")
  end
  return table.concat(out)
end

local function le32(n)
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, math.floor(n / 16777216) % 256)
end

function request()
  counter = counter + 1
  local i = (counter % #images) + 1
  local extra = uncached and string.format("bench %s %d %d", run, thread_id, counter) or ""
  if style == "multipart" or style == "raw" then
    return wrk.format("POST", nil, headers, head .. images[i] .. extra .. tail)
  end
  if style == "v2binary" then
    local image = images[i] .. extra
    local json = '{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":' ..
      (4 + #image) .. '}}]}'
    local h = { ["Content-Type"] = "application/octet-stream", ["Inference-Header-Content-Length"] = tostring(#json) }
    if close then h["Connection"] = "close" end
    return wrk.format("POST", nil, h, json .. le32(#image) .. image)
  end
  local b64 = encoded[i] .. base64(extra)
  local body
  if style == "json" then
    body = '{"image":"' .. b64 .. '"}'
  else
    body = '{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":["' .. b64 .. '"]}]}'
  end
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json", ["Connection"] = close and "close" or nil }, body)
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
