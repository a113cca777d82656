-- etcd: POST /v3/kv/put of key-NNNNN (uniform over 10,000) with a 100-byte value.
package.path = os.getenv("WRK_LUA_DIR") .. "/?.lua;" .. package.path
local b64 = require("b64")
local hdrs = { ["Content-Type"] = "application/json" }
local bodies = {}
function setup(thread) thread:set("seed", math.random(1, 1e9)) end
function init(args)
  math.randomseed(seed or os.time())
  local val = b64(string.rep("v", 100))
  for i = 0, 9999 do
    bodies[i] = '{"key":"' .. b64(string.format("key-%05d", i)) .. '","value":"' .. val .. '"}'
  end
end
function request() return wrk.format("POST", "/v3/kv/put", hdrs, bodies[math.random(0, 9999)]) end
