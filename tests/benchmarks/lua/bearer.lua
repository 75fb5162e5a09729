-- GET the URL's path with `Authorization: Bearer <token>`, cycling through a few tokens.
--   BENCH_DATA   a file with one access token per line
local bench = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
bench.install()

local prepared = {}
local next_index

function init(args)
   bench.init_thread()
   prepared = bench.prepare_each(function(token)
      return "GET", nil, { ["Authorization"] = "Bearer " .. token }, nil
   end)
   next_index = thread_index
end

function request()
   next_index = next_index % #prepared + 1
   return prepared[next_index]
end
