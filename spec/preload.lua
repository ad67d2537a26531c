-- Loaded by busted once, before any spec (.busted: helper). busted drops
-- what a spec file required when the file ends; luv 1.44 does not survive
-- that: its loop dies with the first module table while luv.so still
-- points at it, and the next file that requires luv crashes the whole run
-- in uv_poll_init (a file that only checked `pcall(require, "luv")` was
-- enough). Required here, the host loops stay loaded for the whole run.
for _, name in ipairs { "luv", "cqueues" } do pcall(require, name) end
