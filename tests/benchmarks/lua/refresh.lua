-- POST {refresh_token} as JSON, spending each token of the pool once.
--
-- Rotation spends a token, and a spent token presented again revokes its whole session, so
-- every thread takes its own slice of the pool (every BENCH_THREADS-th line) and never goes
-- back. `used` tells the runner how many of the slice went out; a thread whose slice runs dry
-- sets `dry`, stops, and answers its last calls with a harmless GET /healthz.
--   BENCH_DATA   a file with one unspent refresh token per line
local bench = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
bench.install()

local slice
local headers = { ["Content-Type"] = "application/json" }
local fallback

function init(args)
   bench.init_thread()
   slice = bench.thread_slice(bench.read_lines(os.getenv("BENCH_DATA")))
   fallback = wrk.format("GET", "/healthz", {}, nil)
end

function request()
   local token = bench.take(slice)
   if token == nil then
      return fallback
   end
   return wrk.format("POST", nil, headers, '{"refresh_token":"' .. token .. '"}')
end
