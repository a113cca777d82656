-- Base64 for etcd's JSON gateway (keys and values are base64 there).
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
return function(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local function ch(n) return chars:sub(n + 1, n + 1) end
    out[#out + 1] = ch(math.floor(v / 262144) % 64) .. ch(math.floor(v / 4096) % 64)
      .. (b and ch(math.floor(v / 64) % 64) or "=") .. (c and ch(v % 64) or "=")
  end
  return table.concat(out)
end
