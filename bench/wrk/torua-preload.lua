-- Torua: writes key-00000 .. key-09999, each thread half of them in order,
-- over and over until wrk's duration ends (run it long enough for one pass:
-- a GET run after it shows any key missed as Non-2xx).
local body = string.rep("v", 100)
local hdrs = { ["Content-Type"] = "application/octet-stream" }
local tok = os.getenv("TORUA_TOKEN")
if tok and tok ~= "" then hdrs["Authorization"] = "Bearer " .. tok end
local threads = {}
function setup(thread) thread:set("id", #threads); table.insert(threads, thread) end
local first, next_key
function init(args) first = id * 5000; next_key = first end
function request()
  local k = next_key
  next_key = next_key + 1
  if next_key >= first + 5000 then next_key = first end
  return wrk.format("PUT", string.format("/data/key-%05d", k), hdrs, body)
end
