-- growth.lua - a wrk script for test_growth.py: a steady mix of what a
-- web node under the library serves, N responses long, then it stops.
--
--   wrk -t1 -cC -d600s -s growth.lua URL -- N RUN MISS_FROM MISSES OUT
--
-- Request i (1, 2, ...) by i % 200:
--   0, 100      a miss: miss/m<k>.bin, k from MISS_FROM on, MISSES of them
--               (a file another node holds; a hit once they are all used)
--   50, 150     a write: PUT w/RUN/<k>.txt (nginx's dav module writes a
--               temporary file and renames it in)
--   75          DELETE w/RUN/<k-5>.txt, one written 5 PUTs before
--   175         MOVE w/RUN/<k-3>.txt to w/RUN/<k-3>.moved (odd k: the
--               DELETEs take even ones)
--   1-40        a 404: nope/RUN/<i>.jpg, a name never registered
--   others      a hit: hit/<i % 64>.bin
-- When the Nth response arrives it writes "responses seconds 2xx 404
-- other" to OUT (other: any other status) and ends the run (SIGINT to
-- wrk).  One wrk thread: the counter is that thread's.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } cs_timespec;
int clock_gettime(int clk, cs_timespec *ts);
int getpid(void);
int kill(int pid, int sig);
]]

local n, run, miss_from, misses, out
local sent, got, ok, absent, other = 0, 0, 0, 0, 0
local missed, puts = 0, 0
local t0, dest
local ts = ffi.new("cs_timespec")

local function now()
  ffi.C.clock_gettime(1, ts)    -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

function init(args)
  n, run, miss_from, misses, out = tonumber(args[1]), args[2], tonumber(args[3]),
    tonumber(args[4]), args[5]
  dest = "http://" .. wrk.host .. ":" .. wrk.port .. "/w/" .. run .. "/"
end

local function written(k)
  return "/w/" .. run .. "/" .. k .. ".txt"
end

function request()
  if not t0 then t0 = now() end
  sent = sent + 1
  local r = sent % 200
  if (r == 0 or r == 100) and missed < misses then
    missed = missed + 1
    return wrk.format("GET", "/miss/m" .. (miss_from + missed - 1) .. ".bin")
  elseif r == 50 or r == 150 then
    puts = puts + 1
    return wrk.format("PUT", written(puts), nil, "run " .. run .. " file " .. puts .. "\n")
  elseif r == 75 and puts > 5 then
    return wrk.format("DELETE", written(puts - 5))
  elseif r == 175 and puts > 3 then
    return wrk.format("MOVE", written(puts - 3),
                      { Destination = dest .. (puts - 3) .. ".moved" })
  elseif r >= 1 and r <= 40 then
    return wrk.format("GET", "/nope/" .. run .. "/" .. sent .. ".jpg")
  end
  return wrk.format("GET", "/hit/" .. (sent % 64) .. ".bin")
end

function response(status, headers, body)
  got = got + 1
  if status == 404 then
    absent = absent + 1
  elseif status >= 200 and status < 300 then
    ok = ok + 1
  else
    other = other + 1
  end
  if got == n then
    local f = io.open(out, "w")
    f:write(string.format("%d %.6f %d %d %d\n", got, now() - t0, ok, absent, other))
    f:close()
    ffi.C.kill(ffi.C.getpid(), 2)
  end
end
