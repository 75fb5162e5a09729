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
   for i, token in ipairs(bench.read_lines(os.getenv("BENCH_DATA"))) do
      local body = "token=" .. token .. "&token_type_hint=access_token"
      prepared[i] = wrk.format("POST", nil, headers, body)
   end
   next_index = thread_index
end

function request()
   next_index = next_index % #prepared + 1
   return prepared[next_index]
end
