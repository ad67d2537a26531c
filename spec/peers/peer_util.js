// What the Node test peers share: JSON lines out, SHA-256, random UTF-8.
'use strict';
const crypto = require('crypto');

// 1-, 2-, 3- and 4-byte UTF-8 characters
const POOL = Array.from('az09 ~' + 'éßжλ' + '€中文ㅎ' + '😀🎉𝄞');

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');

// Random valid UTF-8 (with multi-byte characters) of exactly n bytes.
function utf8Text(n) {
  const idx = crypto.randomBytes(n / 2 + 1);
  const parts = new Array(idx.length);
  for (let i = 0; i < idx.length; i++) parts[i] = POOL[idx[i] % POOL.length];
  let b = Buffer.from(parts.join(''));
  let end = Math.min(n, b.length);
  while (end > 0 && end < b.length && (b[end] & 0xc0) === 0x80) end--;   // do not cut a char
  b = Buffer.concat([b.subarray(0, end), Buffer.alloc(n - end, 'a')]);
  return b.toString('utf8');
}

module.exports = { emit, sha, utf8Text };
