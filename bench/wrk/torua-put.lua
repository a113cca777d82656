-- Torua: PUT /data/key-NNNNN (uniform over 10,000) with a 100-byte value.
-- TORUA_TOKEN, when set, is sent as a bearer credential.
local body = string.rep("v", 100)
local hdrs = { ["Content-Type"] = "application/octet-stream" }
local tok = os.getenv("TORUA_TOKEN")
if tok and tok ~= "" then hdrs["Authorization"] = "Bearer " .. tok end
function setup(thread) thread:set("seed", math.random(1, 1e9)) end
function init(args) math.randomseed(seed or os.time()) end
function request()
  return wrk.format("PUT", string.format("/data/key-%05d", math.random(0, 9999)), hdrs, body)
end
