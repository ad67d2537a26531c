--- Samples for the conformance specs, server and client side alike: valid
-- text that must be echoed and invalid text that must be failed with 1007
-- (each named for what is wrong with it); close codes a peer must echo,
-- and codes that must be failed with 1002.
local B = require "spec.bits"

local M = {}

M.VALID_UTF8 = {
  "κόσμε",
  "Hello-µ@ßöäüàá-UTF-8!!",
  "\240\159\152\128 emoji \240\159\142\137",
  B.hex "f4 8f bf bf",                 -- U+10FFFF, the largest code point
  B.hex "ed 9f bf ee 80 80",         -- U+D7FF, U+E000 (around the surrogates)
  B.hex "ef bf be ef bf bf",         -- U+FFFE, U+FFFF (noncharacters are valid)
  "\0 nul is valid",
  B.hex "c2 80 df bf e0 a0 80 f0 90 80 80", -- the smallest 2/3/4-byte sequences
}

M.INVALID_UTF8 = {
  { "overlong 2-byte '/'", B.hex "c0 af" },
  { "overlong 3-byte '/'", B.hex "e0 80 af" },
  { "overlong 4-byte '/'", B.hex "f0 80 80 af" },
  { "maximal overlong 2-byte", B.hex "c1 bf" },
  { "maximal overlong 3-byte", B.hex "e0 9f bf" },
  { "maximal overlong 4-byte", B.hex "f0 8f bf bf" },
  { "overlong NUL", B.hex "c0 80" },
  { "high surrogate U+D800", B.hex "ed a0 80" },
  { "low surrogate U+DFFF", B.hex "ed bf bf" },
  { "surrogate pair", B.hex "ed a0 80 ed b0 80" },
  { "U+110000", B.hex "f4 90 80 80" },
  { "U+1FFFFF", B.hex "f7 bf bf bf" },
  { "5-byte sequence", B.hex "f8 88 80 80 80" },
  { "6-byte sequence", B.hex "fc 84 80 80 80 80" },
  { "truncated 2-byte at the end", "κόσμ\206" },
  { "truncated 3-byte at the end", "abc\226\130" },
  { "truncated 4-byte at the end", "abc\240\159\152" },
  { "lone continuation byte", "\128" },
  { "lone continuation in ASCII", "a\191b" },
  { "lead byte followed by ASCII", "\206 a" },
  { "C0", "\192" },
  { "C1", "\193" },
  { "F5", B.hex "f5 80 80 80" },
  { "FE", "\254" },
  { "FF", "\255" },
  { "bad byte after a long ASCII run", ("x"):rep(4000) .. "\255" .. ("y"):rep(10) },
}

M.VALID_CLOSE = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                  3000, 3999, 4000, 4999 }
M.INVALID_CLOSE = { 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535 }

return M
