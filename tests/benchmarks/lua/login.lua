-- POST {email, password} as JSON for a random user each time.
--   BENCH_DATA       a file with one email per line
--   BENCH_PASSWORD   every user's password
local bench = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
bench.install()

local prepared = {}

function init(args)
   bench.init_thread()
   local password = os.getenv("BENCH_PASSWORD")
   local headers = { ["Content-Type"] = "application/json" }
   prepared = bench.prepare_each(function(email)
      return "POST", nil, headers, string.format('{"email":"%s","password":"%s"}', email, password)
   end)
end

function request()
   return prepared[math.random(#prepared)]
end
