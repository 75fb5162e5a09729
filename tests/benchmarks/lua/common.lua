-- Helpers shared by the benchmark scripts, loaded with dofile() by each of them.
--
-- Parameters come from the environment (wrk hands each thread a fresh Lua state, and the
-- environment reaches all of them alike):
--   BENCH_LUA_DIR      this folder
--   BENCH_THREADS      the number of wrk threads (for per-thread slices of a data file)
--   BENCH_EXPECT       a status counted as expected besides 2xx (e.g. 304), optional
--
-- done() prints one line `BENCH_RESULT {json}` that tests/benchmarks/wrk.py parses.
local M = {}

local threads = {}

-- Return the non-empty lines of a file as a table.
function M.read_lines(path)
   local lines = {}
   local file = assert(io.open(path, "r"), "cannot open " .. tostring(path))
   for line in file:lines() do
      if line ~= "" then
         lines[#lines + 1] = line
      end
   end
   file:close()
   return lines
end

-- The lines of a file that belong to this thread: every BENCH_THREADS-th, from its index.
function M.thread_slice(lines)
   local count = tonumber(os.getenv("BENCH_THREADS") or "1")
   local slice = {}
   for i = thread_index + 1, #lines, count do
      slice[#slice + 1] = lines[i]
   end
   return slice
end

-- The next unspent entry of a single-use pool's slice, or nil once it runs dry: the thread
-- then stops (sets `dry`), and the caller answers its last calls with something harmless.
function M.take(slice)
   if used >= #slice then
      if not dry then
         dry = true
         wrk.thread:stop()
      end
      return nil
   end
   used = used + 1
   return slice[used]
end

-- One prepared request per line of the BENCH_DATA file: make(line) returns wrk.format()'s
-- arguments (method, path, headers, body) for that line.
function M.prepare_each(make)
   local prepared = {}
   for i, line in ipairs(M.read_lines(os.getenv("BENCH_DATA"))) do
      prepared[i] = wrk.format(make(line))
   end
   return prepared
end

-- Called in the main state once per thread before any runs: number the threads.
function M.setup(thread)
   thread:set("thread_index", #threads)
   threads[#threads + 1] = thread
end

-- Per-thread state every script starts with.
function M.init_thread()
   used = 0 -- entries of the thread's slice handed out (pool scripts)
   dry = false -- the thread's slice ran out
   unexpected = 0 -- answers neither 2xx nor BENCH_EXPECT
   expect = tonumber(os.getenv("BENCH_EXPECT") or "0")
   math.randomseed(os.time() + 7919 * thread_index)
end

function M.response(status, headers, body)
   if (status < 200 or status > 299) and status ~= expect then
      unexpected = unexpected + 1
   end
end

function M.done(summary, latency, requests)
   local used_list, unexpected_total, dry_any = {}, 0, false
   for i, thread in ipairs(threads) do
      used_list[i] = string.format("%d", thread:get("used") or 0)
      unexpected_total = unexpected_total + (thread:get("unexpected") or 0)
      dry_any = dry_any or (thread:get("dry") == true)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
         .. '"mean_us":%.1f,"max_us":%d,"non_2xx":%d,"status_errors":%d,"connect_errors":%d,'
         .. '"read_errors":%d,"write_errors":%d,"timeouts":%d,"used":[%s],"dry":%s}\n',
      summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.mean, latency.max,
      unexpected_total, e.status, e.connect, e.read, e.write, e.timeout,
      table.concat(used_list, ","), tostring(dry_any)
   ))
end

-- Install the shared globals; a script then defines init() and request().
function M.install()
   setup = M.setup
   response = M.response
   done = M.done
end

return M
