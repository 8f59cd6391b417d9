-- distinct.lua - a wrk script that requests N distinct paths, each once:
-- <prefix>1.jpg, <prefix>2.jpg, ... (one wrk thread: the counter is
-- that thread's), and times the N responses itself.
--
--   wrk -t1 -cC -d60s -s bench/distinct.lua URL -- N PREFIX OUT
--
-- When the Nth response arrives it writes "responses seconds other" to OUT
-- (other: responses whose status was not 404) and ends the run (SIGINT to
-- wrk, which otherwise would run for the whole -d).  The clock runs from
-- the first request made to the Nth response.  The few requests still in
-- flight then are for further new paths, never a repeated one.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } cs_timespec;
int clock_gettime(int clk, cs_timespec *ts);
int getpid(void);
int kill(int pid, int sig);
]]

local n, prefix, out
local sent, got, other = 0, 0, 0
local t0
local ts = ffi.new("cs_timespec")

local function now()
  ffi.C.clock_gettime(1, ts)    -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

function init(args)
  n, prefix, out = tonumber(args[1]), args[2], args[3]
end

function request()
  if not t0 then t0 = now() end
  sent = sent + 1
  return wrk.format("GET", prefix .. sent .. ".jpg")
end

function response(status, headers, body)
  got = got + 1
  if status ~= 404 then other = other + 1 end
  if got == n then
    local f = io.open(out, "w")
    f:write(string.format("%d %.6f %d\n", got, now() - t0, other))
    f:close()
    ffi.C.kill(ffi.C.getpid(), 2)
  end
end
