-- Torua: GET /data/key-NNNNN (uniform over 10,000; run after torua-preload.lua).
local hdrs = {}
local tok = os.getenv("TORUA_TOKEN")
if tok and tok ~= "" then hdrs["Authorization"] = "Bearer " .. tok end
function setup(thread) thread:set("seed", math.random(1, 1e9)) end
function init(args) math.randomseed(seed or os.time()) end
function request()
  return wrk.format("GET", string.format("/data/key-%05d", math.random(0, 9999)), hdrs)
end
