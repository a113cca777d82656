-- Torua: writes key-00000 .. key-09999 once each, in order, split between
-- wrk's threads; the script stops wrk when every key is written.
local body = string.rep("v", 100)
local hdrs = { ["Content-Type"] = "application/octet-stream" }
local tok = os.getenv("TORUA_TOKEN")
if tok and tok ~= "" then hdrs["Authorization"] = "Bearer " .. tok end
local threads = {}
function setup(thread) thread:set("id", #threads); table.insert(threads, thread) end
local next_key, last
function init(args) next_key = id * 5000; last = next_key + 4999 end
function request()
  local k = next_key
  if k > last then wrk.thread:stop() end
  next_key = next_key + 1
  return wrk.format("PUT", string.format("/data/key-%05d", math.min(k, last)), hdrs, body)
end
