-- GET the URL's path, optionally with one extra header.
--   BENCH_HEADER   e.g. `If-None-Match: "abc"` (optional)
local bench = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
bench.install()

local prepared

function init(args)
   bench.init_thread()
   local headers = {}
   local extra = os.getenv("BENCH_HEADER")
   if extra and extra ~= "" then
      local name, value = extra:match("^([^:]+):%s*(.*)$")
      headers[name] = value
   end
   prepared = wrk.format("GET", nil, headers, nil)
end

function request()
   return prepared
end
