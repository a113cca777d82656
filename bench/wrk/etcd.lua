-- etcd's JSON gateway, keys key-NNNNN uniform over 10,000:
-- ETCD_OP=put: POST /v3/kv/put with a 100-byte value;
-- ETCD_OP=range: POST /v3/kv/range (linearizable, etcd's default).
package.path = os.getenv("WRK_LUA_DIR") .. "/?.lua;" .. package.path
local b64 = require("b64")
local op = os.getenv("ETCD_OP") or "put"
local path = "/v3/kv/" .. op
local hdrs = { ["Content-Type"] = "application/json" }
local bodies = {}
function setup(thread) thread:set("seed", math.random(1, 1e9)) end
function init(args)
  math.randomseed(seed or os.time())
  local value = op == "put" and (',"value":"' .. b64(string.rep("v", 100)) .. '"') or ""
  for i = 0, 9999 do
    bodies[i] = '{"key":"' .. b64(string.format("key-%05d", i)) .. '"' .. value .. '}'
  end
end
function request() return wrk.format("POST", path, hdrs, bodies[math.random(0, 9999)]) end
