-- POST grant_type=client_credentials to a token endpoint with client Basic auth.
--   BENCH_AUTH   the Authorization header value (`Basic ...`)
local bench = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
bench.install()

local prepared

function init(args)
   bench.init_thread()
   local headers = {
      ["Authorization"] = os.getenv("BENCH_AUTH"),
      ["Content-Type"] = "application/x-www-form-urlencoded",
   }
   prepared = wrk.format("POST", nil, headers, "grant_type=client_credentials")
end

function request()
   return prepared
end
