-- POST token=<access token> to an RFC 7662 introspection endpoint with client Basic auth,
-- cycling through a few tokens.
--   BENCH_DATA   a file with one access token per line
--   BENCH_AUTH   the Authorization header value (`Basic ...`)
local bench = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
bench.install()

local prepared = {}
local next_index

function init(args)
   bench.init_thread()
   local headers = {
      ["Authorization"] = os.getenv("BENCH_AUTH"),
      ["Content-Type"] = "application/x-www-form-urlencoded",
   }
   prepared = bench.prepare_each(function(token)
      return "POST", nil, headers, "token=" .. token .. "&token_type_hint=access_token"
   end)
   next_index = thread_index
end

function request()
   next_index = next_index % #prepared + 1
   return prepared[next_index]
end
