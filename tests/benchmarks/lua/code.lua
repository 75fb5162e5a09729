-- POST grant_type=authorization_code with client Basic auth, spending each code of the pool once.
--
-- A code is single-use (a second redemption revokes what the first minted), so every thread
-- takes its own slice of the pool, as refresh.lua does; a thread whose slice runs dry stops.
--   BENCH_DATA       a file with one unspent authorization code per line
--   BENCH_AUTH       the client's Authorization header value (`Basic ...`)
--   BENCH_REDIRECT   the redirect URI the codes were issued for, form-encoded
--   BENCH_VERIFIER   the PKCE code_verifier of every code
local bench = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
bench.install()

local slice
local headers
local tail
local fallback

function init(args)
   bench.init_thread()
   slice = bench.thread_slice(bench.read_lines(os.getenv("BENCH_DATA")))
   headers = {
      ["Authorization"] = os.getenv("BENCH_AUTH"),
      ["Content-Type"] = "application/x-www-form-urlencoded",
   }
   tail = "&redirect_uri=" .. os.getenv("BENCH_REDIRECT")
      .. "&code_verifier=" .. os.getenv("BENCH_VERIFIER")
   fallback = wrk.format("GET", "/healthz", {}, nil)
end

function request()
   local code = bench.take(slice)
   if code == nil then
      return fallback
   end
   return wrk.format("POST", nil, headers, "grant_type=authorization_code&code=" .. code .. tail)
end
