-- POST the hosted sign-in form (email, password, CSRF token) for a random user each time, as a
-- browser on the page would: its CSRF cookie, and an Origin of the server's own.
--   BENCH_DATA       a file with one email per line
--   BENCH_PASSWORD   every user's password
--   BENCH_COOKIE     the Cookie header the sign-in page set (its signed CSRF session)
--   BENCH_CSRF       the form's csrf_token, form-encoded
--   BENCH_ORIGIN     the server's origin
local bench = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
bench.install()

local prepared = {}

function init(args)
   bench.init_thread()
   local password = os.getenv("BENCH_PASSWORD")
   local csrf = os.getenv("BENCH_CSRF")
   local headers = {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Cookie"] = os.getenv("BENCH_COOKIE"),
      ["Origin"] = os.getenv("BENCH_ORIGIN"),
   }
   prepared = bench.prepare_each(function(email)
      local body = "csrf_token=" .. csrf .. "&email=" .. email:gsub("@", "%%40")
         .. "&password=" .. password
      return "POST", nil, headers, body
   end)
end

function request()
   return prepared[math.random(#prepared)]
end
