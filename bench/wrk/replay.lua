-- wrk script for the messenger-gw benchmark.
-- args: <requests file or "-"> <threads> <path> <body> <pace ms per request per connection, 0 = flat out>
-- The requests file has one pre-signed request per line: Signature-Input TAB Signature TAB Content-Digest.
-- Each thread replays its own share, so no nonce is sent twice.
local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local file, threads = args[1], tonumber(args[2])
  path, body, pace = args[3], args[4], tonumber(args[5])
  requests = {}
  local headers = {["Content-Type"] = "application/json"}
  if file == "-" then
    requests[1] = wrk.format("POST", path, headers, body)
    return
  end
  local index = 0
  for line in io.lines(file) do
    if index % threads == id - 1 then
      local input, signature, digest = line:match("([^\t]*)\t([^\t]*)\t([^\t]*)")
      requests[#requests + 1] = wrk.format("POST", path, {
        ["Content-Type"] = "application/json",
        ["Signature-Input"] = input,
        ["Signature"] = signature,
        ["Content-Digest"] = digest,
      }, body)
    end
    index = index + 1
  end
end

local sent = 0

function request()
  sent = sent + 1
  return requests[((sent - 1) % #requests) + 1]
end

function delay()
  return pace
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
