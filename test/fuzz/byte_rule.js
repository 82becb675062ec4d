#!/usr/bin/env node
// The byte rule against the real thing.
//
// Generates thousands of awkward calls rows (variables, cost_breakdown,
// transcript and text columns full of unicode, control characters, odd
// numbers and integer-like keys), stores them in aloro_webhook.calls with a
// terminal status, and checks for every row that the body call_payload()
// returns
//
//   - obeys the byte rule: JSON.stringify(JSON.parse(body)) === body;
//   - carries data.variables equal to what the stored jsonb means (Node's
//     JSON.parse of Postgres's own variables::text), with the contract's
//     status key: the stored one when present, else status === 'completed'
//     added first (behind integer-like keys, as JavaScript orders them);
//   - carries cost.breakdown and cost.total equal to what is stored;
//   - echoes the text columns (phone, assistant name, ...) exactly;
//   - formats well-formed transcripts as the contract says.
//
// Deterministic: a fixed-seed PRNG drives everything.  Talks to Postgres
// through psql (PSQL, default "psql" on PATH); the connection comes from
// PGHOST/PGPORT/PGDATABASE/PGUSER or the options below.  Plain Node 18+,
// node: builtins only.
//
//   node test/fuzz/byte_rule.js [--count N] [--seed S] [--dbname D]
//        [--host H] [--port P] [--user U] [--keep] [--show N]
//
// Exit 0 when every payload passes; 1 on mismatches (the first --show rows
// are printed); 2 when the harness itself fails (psql error, generator
// producing something Postgres refuses, checker that does not catch mutants).
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');

// ---------------------------------------------------------------- options

const opts = { count: 6000, seed: 0x5eed2024, show: 5, keep: false };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) die(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--count') opts.count = parseInt(val(), 10);
    else if (a === '--seed') opts.seed = Number(val()) >>> 0;
    else if (a === '--show') opts.show = parseInt(val(), 10);
    else if (a === '--dbname' || a === '-d') process.env.PGDATABASE = val();
    else if (a === '--host' || a === '-h') process.env.PGHOST = val();
    else if (a === '--port' || a === '-p') process.env.PGPORT = val();
    else if (a === '--user' || a === '-U') process.env.PGUSER = val();
    else if (a === '--keep') opts.keep = true;
    else if (a === '--help') {
      console.log('usage: node test/fuzz/byte_rule.js [--count N] [--seed S] [--dbname D] ' +
                  '[--host H] [--port P] [--user U] [--keep] [--show N]');
      process.exit(0);
    } else die(`unknown argument ${a}`);
  }
  if (!(opts.count > 0)) die('--count must be positive');
}

function die(msg) {
  console.error(`byte_rule: ${msg}`);
  process.exit(2);
}

// ---------------------------------------------------------------- PRNG

// mulberry32: small, fast, and the same sequence everywhere.
let prngState = opts.seed >>> 0;
function rand() {
  prngState = (prngState + 0x6d2b79f5) >>> 0;
  let t = prngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1)); // inclusive
const chance = (p) => rand() < p;
const pick = (arr) => arr[Math.floor(rand() * arr.length)];
const hex4 = (n) => {
  const h = n.toString(16).padStart(4, '0');
  // JSON accepts either case in \u escapes; Postgres must too
  return chance(0.5) ? h : h.toUpperCase();
};

// ---------------------------------------------------------------- strings

const CONTROLS = [];
for (let c = 0x01; c <= 0x1f; c++) CONTROLS.push(c);
CONTROLS.push(0x7f);

const ASCII = ' abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789' +
  '!#$%&\'()*+,-.:;<=>?@[]^_`{|}~';
const SPECIAL_BMP = [
  0x22, 0x5c, 0x2f, 0x27, 0x3c, 0x3e, 0x26, 0x24, 0x3a, 0x25, 0x2c, 0x7b, 0x7d, 0x5b, 0x5d,
  0x80, 0x85, 0x9f, 0xa0, 0xad, 0xdf, 0xe9, 0xff,               // C1 controls, nbsp, shy
  0x0301, 0x0308, 0x0327, 0x036f, 0x20dd, 0x0489,                // combining marks
  0x05d0, 0x05d1, 0x0627, 0x0644, 0x0e01, 0x0915, 0x094d,        // Hebrew, Arabic, Thai, Devanagari
  0x200b, 0x200c, 0x200d, 0x200e, 0x200f, 0x202a, 0x202e, 0x2060, 0x2066,
  0x2028, 0x2029, 0x2028, 0x2029,                                // line/paragraph separators
  0x3000, 0x3042, 0x30a2, 0x4e2d, 0x6587, 0x9fff, 0xac00, 0xd7a3, 0xd7ff,
  0xe000, 0xf8ff, 0xfdd0, 0xfe0f, 0xfeff, 0xff11, 0xfffd, 0xfffe, 0xffff,
];
const ASTRAL = [
  0x1f600, 0x1f4a9, 0x1f468, 0x1f469, 0x1f467, 0x1f1fa, 0x1f1f8, 0x1f3fb, 0x1f9d1,
  0x1d11e, 0x1d400, 0x20000, 0x2a6d6, 0x10000, 0x10ffff, 0xe0001, 0xe0041, 0x1f9ea,
];
const SNIPPETS = [
  'Customer inquired about order status', '👨‍👩‍👧‍👦', '🇺🇸🇯🇵', 'é', 'é', 'ñ', '中文字符', '한국어',
  '\u2028', '\u2029', '</script>', '\\u0000', '\\n', '"quoted"', "it's", 'C:\\path\\to',
  'https://example.com/a/b?c=d&e=f', '+1 (555) 123-4567', 'null', 'true', '0.30', '1e21',
  '\r\n', '\t', '\u0007\u0008', '\u001b[31mred\u001b[0m', 'Zalgo: Z\u0351\u0354\u0300a\u0315\u034el',
  '\ud83d\ude00\u200d', '\u0301leading combining', 'ﷺ', '\ufeffbom', 'ｆｕｌｌｗｉｄｔｈ',
];

function randomCodePoint() {
  const r = rand();
  if (r < 0.40) return ASCII.charCodeAt(int(0, ASCII.length - 1));
  if (r < 0.52) return pick(CONTROLS);
  if (r < 0.74) return pick(SPECIAL_BMP);
  if (r < 0.84) return pick(ASTRAL);
  if (r < 0.94) {
    let c;
    do c = int(0x80, 0xffff); while (c >= 0xd800 && c <= 0xdfff);
    return c;
  }
  return int(0x10000, 0x10ffff);
}

// A JS string without U+0000 and without lone surrogates (Postgres refuses both).
function randomString(maxLen = 24) {
  const r = rand();
  if (r < 0.05) return '';
  if (r < 0.15) return pick(SNIPPETS);
  const n = int(1, maxLen);
  let s = '';
  for (let i = 0; i < n; i++) {
    if (chance(0.04)) s += pick(SNIPPETS);
    else s += String.fromCodePoint(randomCodePoint());
  }
  return s;
}

// The string as JSON text, with a random but valid choice of escapes, so
// that Postgres's JSON parser sees every form (\", \\, \/, \b, \u001F,
// \u001f, surrogate pairs in either case, escaped BMP characters, raw UTF-8).
function jsonString(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c === 0x2f) out += chance(0.5) ? '\\/' : '/';
    else if (c < 0x20) {
      const short = { 8: '\\b', 9: '\\t', 10: '\\n', 12: '\\f', 13: '\\r' }[c];
      out += short && chance(0.6) ? short : '\\u' + hex4(c);
    } else if (c < 0x80 && c !== 0x7f) out += chance(0.03) ? '\\u' + hex4(c) : ch;
    else if (c <= 0xffff) out += chance(0.25) ? '\\u' + hex4(c) : ch;
    else if (chance(0.3)) {
      const v = c - 0x10000;
      out += '\\u' + hex4(0xd800 + (v >> 10)) + '\\u' + hex4(0xdc00 + (v & 0x3ff));
    } else out += ch;
  }
  return out + '"';
}

// ---------------------------------------------------------------- numbers

const AWKWARD_NUMBERS = [
  '0', '-0', '0.0', '-0.0', '0e0', '0E+0', '-0e-5', '0.000', '1', '-1', '1.0', '1.00000', '-1.0',
  '0.30', '0.1', '0.2', '0.30000000000000004', '0.45', '0.05', '0.10', '4.35', '1.005', '0.07',
  '1e21', '1E21', '1e+21', '1e20', '1E+20', '100000000000000000000', '999999999999999999999',
  '1000000000000000000000', '999999999999999900000', '1000000000000000128',
  '123456789012345678901234567890', '1e22', '1e23', '9.999999999999999e22', '8.41e21',
  '1e-7', '1e-6', '0.000001', '0.0000001', '0.00000123', '1.5e-7', '5e-7', '5.5e-7', '1.2e-6',
  '9.99999e-7', '0.0000009999999', '123e-20', '1e-5', '-1e-7',
  '5e-324', '4.9406564584124654e-324', '2.4703282292062328e-324', '2.4703282292062327e-324',
  '2e-324', '1e-400', '-1e-400', '1e-1000', '2.2250738585072014e-308', '2.2250738585072011e-308',
  '1.7976931348623157e308', '1.7976931348623158e308', '1.7976931348623159e308',
  '-1.7976931348623157e308', '1e308', '1e309', '1e400', '-1e400', '1e1000', '1.7e+308',
  '12345678901234567890', '-12345678901234567890', '9007199254740993', '9007199254740992',
  '9007199254740991', '-9007199254740993', '18446744073709551615', '18446744073709551616',
  '4294967295', '4294967296', '2147483647', '-2147483648',
  '0.1000000000000000055511151231257827', '0.1000000000000000055511151231257828',
  '3.141592653589793238462643383279502884197', '1.0e0', '10e-1', '0.5e1', '123.456e2', '1e0',
  '-1e-0', '100', '1e2', '1e+2', '1E-2', '123456789.123456789', '1.23e+5', '1e16', '12345678901234567',
  '0.000001000', '1000000000000000000000.5', '1e07', '1e-07', '0.1e-5', '1e-6000'.slice(0, 5),
  '0.' + '0'.repeat(300) + '1', '1' + '0'.repeat(400), '9'.repeat(400), '0.' + '9'.repeat(40),
  '1.' + '0'.repeat(60) + '1', '-' + '9'.repeat(25) + '.' + '9'.repeat(25),
];

function digits(n, leadingNonZero) {
  let s = leadingNonZero ? String(int(1, 9)) : String(int(0, 9));
  for (let i = 1; i < n; i++) s += String(int(0, 9));
  return s;
}

const scratch = new DataView(new ArrayBuffer(8));
const numbersUsed = new Set();

function randomNumber() {
  const r = rand();
  if (r < 0.30) {
    const n = pick(AWKWARD_NUMBERS);
    numbersUsed.add(n);
    return n;
  }
  if (r < 0.50) {
    // a random IEEE double (any exponent, subnormals included), in one of JS's layouts
    let d;
    do {
      scratch.setUint32(0, Math.floor(rand() * 4294967296));
      scratch.setUint32(4, Math.floor(rand() * 4294967296));
      d = scratch.getFloat64(0);
    } while (!Number.isFinite(d));
    const f = rand();
    if (f < 0.6) return String(d);
    if (f < 0.8) return d.toExponential(int(0, 20));
    return d.toPrecision(int(1, 21));
  }
  if (r < 0.75) {
    // a decimal with random digits, fraction and exponent
    let s = chance(0.3) ? '-' : '';
    s += chance(0.3) ? '0' : digits(int(1, 25), true);
    if (chance(0.6)) s += '.' + digits(int(1, 25), false);
    if (chance(0.5)) {
      s += pick(['e', 'E']) + pick(['', '+', '-']);
      const e = int(0, chance(0.8) ? 30 : 420);
      s += (chance(0.1) ? '0' : '') + String(e);
    }
    return s;
  }
  if (r < 0.85) {
    // integers around 2^32, 2^53, 2^63, 2^64
    const base = pick([2n ** 32n, 2n ** 53n, 2n ** 63n, 2n ** 64n, 10n ** 21n, 10n ** 15n]);
    const v = base + BigInt(int(-3, 3));
    return (chance(0.3) ? '-' : '') + v.toString();
  }
  if (r < 0.95) {
    // money: small decimals with trailing zeros
    return `${int(0, 99)}.${digits(int(1, 6), false)}`;
  }
  return String(int(-1000, 1000));
}

// ---------------------------------------------------------------- keys and values

const AWKWARD_KEYS = [
  '10', '2', '01', '0', '-1', '1.0', '4294967294', '4294967295', '4294967296', '99999999999',
  ' 1', '1 ', '1', '9', '100', '42', '00', '+1', '1e3', '0x1', '١', '１', '2147483647',
  '9007199254740993', '4294967293', '429496729', '3', '11', '20', '007',
  'status', '__proto__', '', 'constructor', 'toString', 'hasOwnProperty', 'length', 'prototype',
  'summary', 'voice', 'transcription', 'recording', 'a', 'b', 'Status', 'STATUS', 'statuses',
  'status ', '\u2028', 'é', 'é', '🙂', 'key"quote', 'key\\slash', 'a/b', '\u0001', '\t', '\n',
];

function randomKey() {
  const r = rand();
  if (r < 0.45) return pick(AWKWARD_KEYS);
  if (r < 0.65) {
    // integer-like: canonical or not, below or above 2^32 - 1
    const n = int(1, 12);
    return chance(0.2) ? '0' + digits(n, false) : digits(n, true);
  }
  return randomString(10);
}

// A JSON value as text; depth limits nesting.
function randomValue(depth) {
  const r = rand();
  if (depth <= 0 || r < 0.35) return randomNumber();
  if (r < 0.62) return jsonString(randomString());
  if (r < 0.68) return pick(['true', 'false', 'null']);
  if (r < 0.82) return randomArray(depth - 1);
  return randomObject(depth - 1, int(0, 6));
}

function randomArray(depth) {
  const n = chance(0.15) ? 0 : int(1, 6);
  const items = [];
  for (let i = 0; i < n; i++) items.push(randomValue(depth));
  return ws() + '[' + items.join(ws() + ',' + ws()) + ']';
}

// Random insignificant whitespace in the input (Postgres drops it).
function ws() {
  return chance(0.1) ? pick([' ', '\n', '\t', '\r\n', '  ']) : '';
}

function randomObject(depth, nkeys, extra) {
  const pairs = [];
  for (let i = 0; i < nkeys; i++) {
    // sometimes repeat a key: jsonb and JSON.parse both keep the last one
    const key = pairs.length > 0 && chance(0.05) ? pick(pairs)[0] : randomKey();
    pairs.push([key, randomValue(depth)]);
  }
  if (extra) pairs.splice(int(0, pairs.length), 0, ...extra);
  return ws() + '{' + pairs.map(([k, v]) => ws() + jsonString(k) + ws() + ':' + ws() + v)
    .join(',') + ws() + '}';
}

// ---------------------------------------------------------------- rows

const TERMINAL = ['completed', 'completed', 'missed', 'busy', 'voicemail', 'failed'];

function maybeText(p = 0.8) {
  return chance(p) ? randomString(30) : null;
}

// A transcript: mostly well-formed entries, sometimes odd ones.
function randomTranscript() {
  const n = chance(0.1) ? 0 : int(1, 6);
  const entries = [];
  let wellFormed = true;
  for (let i = 0; i < n; i++) {
    const kind = rand();
    if (kind < 0.9) {
      const speaker = chance(0.8) ? pick(['ai', 'customer']) : randomString(12);
      const start = pick([
        () => '0', () => String(int(0, 3599)), () => (rand() * 7200).toFixed(int(0, 3)),
        () => pick(['59.999', '3599.9', '3600', '36000.5', '0.30', '1e2', '86399', '360000']),
      ])();
      const fields = [
        [jsonString('speaker'), jsonString(speaker)],
        [jsonString('text'), jsonString(randomString(40))],
        [jsonString('start'), start],
      ];
      const extraKey = randomKey();
      if (chance(0.2) && !['speaker', 'text', 'start'].includes(extraKey))
        fields.push([jsonString(extraKey), randomValue(1)]);
      // any key order in the input; jsonb sorts them anyway
      for (let j = fields.length - 1; j > 0; j--) {
        const k = int(0, j);
        [fields[j], fields[k]] = [fields[k], fields[j]];
      }
      entries.push('{' + fields.map(([k, v]) => k + ':' + v).join(',') + '}');
    } else {
      // entries the contract does not describe: only the byte rule is checked
      wellFormed = false;
      entries.push(pick([
        () => randomValue(2),
        () => '{"speaker":null,"text":' + randomValue(1) + '}',
        () => '{"text":' + jsonString(randomString()) + ',"start":"12.5"}',
        () => '{"speaker":' + randomNumber() + ',"text":' + randomNumber() + ',"start":-3}',
        () => '{}',
      ])());
    }
  }
  return { text: '[' + entries.join(',') + ']', wellFormed };
}

function pad(n, w) {
  return String(n).padStart(w, '0');
}

function makeRow(i) {
  const id = 'fuzz_' + pad(i, 6);
  const status = pick(TERMINAL);
  const row = { id, status };

  // variables: NULL now and then, often a stored status, often integer-like keys
  if (chance(0.05)) row.variables = null;
  else {
    const extra = chance(0.3) ? [['status', randomValue(2)]] : undefined;
    row.variables = randomObject(int(1, 4), chance(0.08) ? 0 : int(1, 10), extra);
  }
  row.cost_breakdown = chance(0.15) ? null : randomObject(int(0, 2), chance(0.1) ? 0 : int(1, 6),
    chance(0.5) ? [['voice', randomNumber()], ['transcription', randomNumber()]] : undefined);
  row.cost_total = chance(0.2) ? null
    : chance(0.05) ? pick(['NaN', 'Infinity', '-Infinity']) : randomNumber();
  if (chance(0.2)) {
    row.transcript = null;
    row.transcriptWellFormed = true;
  } else {
    const t = randomTranscript();
    row.transcript = t.text;
    row.transcriptWellFormed = t.wellFormed;
  }
  row.phone = maybeText();
  row.direction = chance(0.2) ? null : pick(['inbound', 'outbound']);
  row.assistant_id = maybeText();
  row.assistant_name = maybeText();
  row.phone_number_id = maybeText(0.6);
  row.phone_number = maybeText(0.6);
  row.campaign_id = maybeText(0.5);
  row.campaign_name = maybeText(0.5);
  row.recording_url = maybeText(0.6);
  row.recording_duration = chance(0.3) ? null : int(0, 100000);
  row.duration = chance(0.3) ? null : pick([0, 1, 180, int(0, 1e6), 2147483647]);
  // times: mostly both, sometimes none (the timestamp is then the queuing time)
  if (chance(0.9)) {
    const end = int(946684800, 1893456000) * 1e6 + int(0, 999999);
    const start = end - int(0, 10000) * 1e6 - int(0, 999999);
    row.ended_at = end;
    row.started_at = chance(0.9) ? start : null;
  } else {
    row.ended_at = null;
    row.started_at = null;
  }
  row.include_recording = i % 4 !== 0;
  return row;
}

// ---------------------------------------------------------------- SQL

function sqlLiteral(s) {
  if (s === null || s === undefined) return 'NULL';
  return "'" + String(s).replace(/'/g, "''") + "'";
}

function sqlTime(us) {
  if (us === null) return 'NULL';
  const ms = Math.floor(us / 1000);
  const iso = new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
  return `'${iso}.${pad(us % 1e6, 6)}+00'`;
}

const COLUMNS = ['id', 'phone', 'direction', 'status', 'duration', 'started_at', 'ended_at',
  'assistant_id', 'assistant_name', 'phone_number_id', 'phone_number', 'campaign_id',
  'campaign_name', 'variables', 'transcript', 'recording_url', 'recording_duration',
  'cost_total', 'cost_breakdown'];

function rowValues(r) {
  return '(' + [
    sqlLiteral(r.id), sqlLiteral(r.phone), sqlLiteral(r.direction), sqlLiteral(r.status),
    r.duration === null ? 'NULL' : String(r.duration),
    sqlTime(r.started_at), sqlTime(r.ended_at),
    sqlLiteral(r.assistant_id), sqlLiteral(r.assistant_name),
    sqlLiteral(r.phone_number_id), sqlLiteral(r.phone_number),
    sqlLiteral(r.campaign_id), sqlLiteral(r.campaign_name),
    r.variables === null ? 'NULL' : sqlLiteral(r.variables) + '::jsonb',
    r.transcript === null ? 'NULL' : sqlLiteral(r.transcript) + '::jsonb',
    sqlLiteral(r.recording_url),
    r.recording_duration === null ? 'NULL' : String(r.recording_duration),
    r.cost_total === null ? 'NULL' : sqlLiteral(r.cost_total) + '::numeric',
    r.cost_breakdown === null ? 'NULL' : sqlLiteral(r.cost_breakdown) + '::jsonb',
  ].join(', ') + ')';
}

function psql(args, input) {
  const bin = process.env.PSQL || 'psql';
  const res = spawnSync(bin, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', ...args], {
    input,
    env: { ...process.env, PGCLIENTENCODING: 'UTF8', PGOPTIONS: '-c client_min_messages=warning' },
    maxBuffer: 1 << 30,
    encoding: 'utf8',
  });
  if (res.error) die(`cannot run ${bin}: ${res.error.message}`);
  if (res.status !== 0) die(`${bin} ${args.join(' ')} failed (exit ${res.status}):\n${res.stderr}`);
  return res.stdout;
}

// psql's own output is no faithful channel: its display code drops what it
// takes for invalid characters (noncharacters such as U+FFFF, U+10FFFF), so
// the whole result comes back as base64 of its UTF-8 bytes.
const FETCH = `
SELECT encode(convert_to(coalesce(json_agg(json_build_array(
         id, status, variables::text, cost_breakdown::text, transcript::text, cost_total::text,
         phone, direction, assistant_id, assistant_name, phone_number_id, phone_number,
         campaign_id, campaign_name, recording_url, recording_duration, inc,
         aloro_webhook.call_payload(id, inc))
       ORDER BY id)::text, '[]'), 'UTF8'), 'base64')
  FROM (SELECT *, (substr(id, 6)::int % 4 <> 0) AS inc
          FROM aloro_webhook.calls
         WHERE id LIKE 'fuzz\\_%') c`;

// ---------------------------------------------------------------- expectations

const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
// What JSON can carry of a value: Infinity and NaN become null, -0 becomes 0.
const norm = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

// A numeric column's value in the body: NaN and values beyond double range
// have no JSON form, so the key is left out, as for NULL.
function numericToJs(text) {
  if (text === null) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n)) return undefined;
  return norm(n);
}

function clock(seconds) {
  const s = Math.floor(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}:${pad(Math.floor((s % 3600) / 60), 2)}:${pad(s % 60, 2)}`;
  return `${pad(Math.floor(s / 60), 2)}:${pad(s % 60, 2)}`;
}

function expectedTranscript(text) {
  if (text === null) return undefined;
  const entries = JSON.parse(text);
  if (entries.length === 0) return undefined;
  const label = { ai: 'AI', customer: 'Customer' };
  return {
    formatted: entries.map((e) => `${has(label, e.speaker) ? label[e.speaker] : e.speaker}: ${e.text}`)
      .join('\n'),
    timestamped: entries.map((e) => ({ speaker: e.speaker, text: e.text, timestamp: clock(e.start) })),
  };
}

// Compares one decoded value with its expectation: the same JSON text (so
// the same non-index key order too) and deeply equal.
function same(actual, expected) {
  return JSON.stringify(actual) === JSON.stringify(expected) &&
    util.isDeepStrictEqual(actual, norm(expected));
}

// Every problem with one payload; [] when it is right.
function check(f) {
  const problems = [];
  let parsed;
  try {
    parsed = JSON.parse(f.body);
  } catch (e) {
    return [`body is not JSON: ${e.message}`];
  }
  const again = JSON.stringify(parsed);
  if (again !== f.body) {
    let i = 0;
    while (i < again.length && again[i] === f.body[i]) i++;
    // a window around the first difference, not cutting a surrogate pair
    const snip = (str) => {
      let a = Math.max(0, i - 20);
      let b = Math.min(str.length, i + 40);
      if (a > 0 && /[\udc00-\udfff]/.test(str[a])) a--;
      if (b < str.length && /[\udc00-\udfff]/.test(str[b])) b++;
      return JSON.stringify(str.slice(a, b));
    };
    problems.push(`byte rule: JSON.stringify(JSON.parse(body)) differs at offset ${i}: ` +
      `body ${snip(f.body)} vs stringify ${snip(again)}`);
  }
  const data = parsed && parsed.data;
  if (typeof data !== 'object' || data === null) return problems.concat('no data object');

  // variables: the stored object, with the status rule
  let vars;
  if (f.variables === null) vars = { status: f.status === 'completed' };
  else {
    vars = JSON.parse(f.variables);
    if (!has(vars, 'status')) vars = { status: f.status === 'completed', ...vars };
  }
  if (!same(data.variables, vars))
    problems.push(`variables: got ${JSON.stringify(data.variables)}, expected ${JSON.stringify(vars)}`);

  // cost: total and breakdown
  const cost = {};
  const total = numericToJs(f.cost_total);
  if (total !== undefined) cost.total = total;
  if (f.cost_breakdown !== null) cost.breakdown = JSON.parse(f.cost_breakdown);
  const wantCost = Object.keys(cost).length ? cost : undefined;
  if (!same(data.cost, wantCost))
    problems.push(`cost: got ${JSON.stringify(data.cost)}, expected ${JSON.stringify(wantCost)}`);

  // text columns come back exactly
  const section = (pairs) => {
    const o = {};
    for (const [k, v] of pairs) if (v !== null && v !== undefined) o[k] = v;
    return Object.keys(o).length ? o : undefined;
  };
  const call = data.call || {};
  for (const [k, v] of [['id', f.id], ['phone', f.phone], ['direction', f.direction],
    ['status', f.status]]) {
    if ((v === null ? undefined : v) !== call[k])
      problems.push(`call.${k}: got ${JSON.stringify(call[k])}, expected ${JSON.stringify(v)}`);
  }
  // times and duration, from the values the generator stored
  const g = f.gen;
  const iso = (us) => new Date(Math.floor(us / 1000)).toISOString().slice(0, 19) + 'Z';
  const want = {
    duration: g.duration !== null ? g.duration
      : g.started_at !== null && g.ended_at !== null ? Math.floor((g.ended_at - g.started_at) / 1e6)
        : undefined,
    started_at: g.started_at === null ? undefined : iso(g.started_at),
    ended_at: g.ended_at === null ? undefined : iso(g.ended_at),
  };
  for (const [k, v] of Object.entries(want)) {
    if (call[k] !== v)
      problems.push(`call.${k}: got ${JSON.stringify(call[k])}, expected ${JSON.stringify(v)}`);
  }
  if (g.ended_at !== null ? parsed.timestamp !== iso(g.ended_at)
    : !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(parsed.timestamp))
    problems.push(`timestamp: got ${JSON.stringify(parsed.timestamp)}`);
  if (parsed.event !== 'call.ended') problems.push(`event: got ${JSON.stringify(parsed.event)}`);

  const sections = {
    assistant: section([['id', f.assistant_id], ['name', f.assistant_name]]),
    phone_number: section([['id', f.phone_number_id], ['number', f.phone_number]]),
    campaign: section([['id', f.campaign_id], ['name', f.campaign_name]]),
    recording: f.include ? section([['url', f.recording_url], ['duration', f.recording_duration]])
      : undefined,
  };
  for (const [name, want] of Object.entries(sections)) {
    if (!same(data[name], want))
      problems.push(`${name}: got ${JSON.stringify(data[name])}, expected ${JSON.stringify(want)}`);
  }

  // transcript, for the entries the contract describes
  if (f.transcriptWellFormed) {
    const want = expectedTranscript(f.transcript);
    if (!same(data.transcript, want))
      problems.push(`transcript: got ${JSON.stringify(data.transcript)}, expected ${JSON.stringify(want)}`);
  }
  return problems;
}

// ---------------------------------------------------------------- checking the checker

// Bodies that break the rules in ways a serializer might: each one must be
// flagged, or the checker proves nothing.
// [start, end) of the JSON value that begins at b[start]
function valueEnd(b, start) {
  let depth = 0;
  for (let i = start; i < b.length; i++) {
    const c = b[i];
    if (c === '"') {
      for (i++; b[i] !== '"'; i++) if (b[i] === '\\') i++;
      if (depth === 0) return i + 1;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      if (--depth === 0) return i + 1;
    } else if (depth === 0 && (c === ',' || c === '}')) return i;
  }
  return b.length;
}

function mutants(f) {
  const b = f.body;
  const out = [];
  // replaces the first `from` inside [lo, hi)
  const sub = (from, to, lo = 0, hi = b.length) => {
    const i = b.slice(lo, hi).indexOf(from);
    if (i >= 0) out.push(b.slice(0, lo + i) + to + b.slice(lo + i + from.length));
  };
  // byte-level mistakes anywhere: the byte rule must catch them
  sub('{"event"', '{ "event"');                      // whitespace
  sub('"variables":{', '"variables": {');
  sub('"call.ended"', '"call.ended\\u0020"');        // same value, other escape
  const ctl = /\\u00(0[0-7]|0b|0e|0f|1[0-9a-f])/.exec(b);
  if (ctl) sub(ctl[0], ctl[0].toUpperCase().replace('\\U', '\\u'));
  if (b.includes('\u2028')) sub('\u2028', '\\u2028');
  if (b.includes('/')) sub('/', '\\/');
  // value mistakes in the sections checked against storage (they may keep the byte rule)
  for (const key of ['"variables":', '"cost":']) {
    const at = key === '"cost":' ? b.lastIndexOf(key) : b.indexOf(key);
    if (at < 0) continue;
    const lo = at + key.length;
    const hi = valueEnd(b, lo);
    if (key === '"variables":') sub('{', '{"zz":1,', lo, hi);  // an extra key
    sub('"status":true', '"status":false', lo, hi);            // wrong status
    sub('"status":false', '"status":true', lo, hi);
    const num = /:(-?\d+(\.\d+)?(e[+-]\d+)?)[,}\]]/.exec(b.slice(lo, hi));
    if (num) {
      sub(num[0], `:${num[1]}.0${num[0].slice(-1)}`, lo, hi); // 1 -> 1.0 (or invalid)
      sub(num[0], `:${num[1]}1${num[0].slice(-1)}`, lo, hi);  // another value
    }
    const str = /:"((?:[^"\\]|\\.)+)"/.exec(b.slice(lo, hi));
    if (str) sub(str[0], `:"${str[1]}x"`, lo, hi);               // another string
  }
  return out.filter((m) => m !== b);
}

function selfTest(fetched) {
  let tried = 0;
  for (const f of fetched.slice(0, 50)) {
    if (check(f).length) continue;
    for (const body of mutants(f)) {
      tried++;
      if (check({ ...f, body }).length === 0) {
        die(`checker self-test: a broken body passed as correct:\n  row ${f.id}\n  ` +
            `real    ${JSON.stringify(f.body)}\n  mutant  ${JSON.stringify(body)}`);
      }
    }
  }
  // a key-order mistake: index keys behind the others
  const swapped = '{"b":1,"2":1}';
  if (JSON.stringify(JSON.parse(swapped)) === swapped) die('checker self-test: key order not detected');
  if (tried < Math.min(100, fetched.length)) die(`checker self-test: only ${tried} mutants could be made`);
  return tried;
}

// ---------------------------------------------------------------- coverage

// What the stored rows actually contain.  The run fails when a category the
// test promises is missing, so a weakened generator cannot pass unnoticed.
const REQUIRED_KEYS = ['10', '2', '01', '0', '-1', '1.0', '4294967294', '4294967295', '99999999999',
  ' 1', 'status', '__proto__', ''];
const REQUIRED_NUMBERS = ['0.30', '1.0', '1e21', '1e-7', '1e-6', '123e-20', '5e-324',
  '1.7976931348623157e308', '1e400', '-0', '12345678901234567890', '9007199254740993',
  '0.1000000000000000055511151231257827'];

function coverage(fetched, enforce) {
  const keys = new Set();
  const cps = new Set();
  const cov = { astral: 0, combining: 0, cjk: 0, indexKeys: 0, storedStatus: 0, depth5: 0,
    emptyObjects: 0, emptyArrays: 0, nonFinite: 0, nullVariables: 0, noRecording: 0 };
  const str = (s) => {
    for (const ch of s) {
      const c = ch.codePointAt(0);
      if (c < 0x80 || c === 0x2028 || c === 0x2029) cps.add(c);
      if (c > 0xffff) cov.astral++;
      else if (c >= 0x300 && c <= 0x36f) cov.combining++;
      else if (c >= 0x4e00 && c <= 0x9fff) cov.cjk++;
    }
  };
  const walk = (v, depth) => {
    if (depth >= 5) cov.depth5++;
    if (typeof v === 'string') str(v);
    else if (typeof v === 'number' && !Number.isFinite(v)) cov.nonFinite++;
    else if (Array.isArray(v)) {
      if (v.length === 0) cov.emptyArrays++;
      for (const x of v) walk(x, depth + 1);
    } else if (v && typeof v === 'object') {
      const ks = Object.keys(v);
      if (ks.length === 0) cov.emptyObjects++;
      for (const k of ks) {
        keys.add(k);
        str(k);
        if (String(Number(k) >>> 0) === k && Number(k) < 4294967295) cov.indexKeys++;
        walk(v[k], depth + 1);
      }
    }
  };
  for (const f of fetched) {
    if (f.variables === null) cov.nullVariables++;
    else {
      const vars = JSON.parse(f.variables);
      if (has(vars, 'status')) cov.storedStatus++;
      walk(vars, 0);
    }
    if (f.cost_breakdown !== null) walk(JSON.parse(f.cost_breakdown), 0);
    if (f.transcript !== null) walk(JSON.parse(f.transcript), 0);
    for (const c of ['phone', 'assistant_name', 'assistant_id', 'campaign_name', 'campaign_id',
      'phone_number', 'phone_number_id', 'recording_url']) if (f[c] !== null) str(f[c]);
    if (!f.include) cov.noRecording++;
  }
  const missing = [];
  for (let c = 0x01; c <= 0x7f; c++) if ((c < 0x20 || c === 0x7f || '"\\/'.includes(String.fromCharCode(c))) && !cps.has(c)) missing.push(`U+${c.toString(16).padStart(4, "0")}`);
  for (const c of [0x2028, 0x2029]) if (!cps.has(c)) missing.push(`U+${c.toString(16)}`);
  for (const k of REQUIRED_KEYS) if (!keys.has(k)) missing.push(`key ${JSON.stringify(k)}`);
  for (const n of REQUIRED_NUMBERS) if (!numbersUsed.has(n)) missing.push(`number ${n}`);
  for (const [k, v] of Object.entries(cov)) if (v === 0) missing.push(k);
  if (missing.length && enforce) die(`generator coverage incomplete: ${missing.join(', ')}`);
  if (missing.length) console.log(`# not covered with this --count: ${missing.join(', ')}`);
  return `${keys.size} distinct keys, ${cov.indexKeys} integer-like keys, ` +
    `${cov.storedStatus} stored status keys, ${cov.astral} astral / ${cov.combining} combining / ` +
    `${cov.cjk} CJK characters, ${numbersUsed.size} listed awkward numbers, ` +
    `${cov.nonFinite} numbers beyond double range, ${cov.noRecording} bodies without recording`;
}

// ---------------------------------------------------------------- main

function main() {
  const t0 = Date.now();
  const rows = [];
  for (let i = 1; i <= opts.count; i++) rows.push(makeRow(i));
  const byId = new Map(rows.map((r) => [r.id, r]));

  // one script: drop earlier fuzz rows, insert in batches, one transaction
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aw_byte_rule_'));
  const file = path.join(tmp, 'load.sql');
  const parts = ['BEGIN;', "DELETE FROM aloro_webhook.calls WHERE id LIKE 'fuzz\\_%';"];
  for (let i = 0; i < rows.length; i += 200) {
    parts.push(`INSERT INTO aloro_webhook.calls (${COLUMNS.join(', ')}) VALUES\n` +
      rows.slice(i, i + 200).map(rowValues).join(',\n') + ';');
  }
  parts.push('COMMIT;');
  fs.writeFileSync(file, parts.join('\n') + '\n');
  const sqlBytes = fs.statSync(file).size;
  psql(['-f', file]);
  fs.rmSync(tmp, { recursive: true, force: true });
  const tLoad = Date.now();

  const out = Buffer.from(psql(['-At', '-c', FETCH]).replace(/\s+/g, ''), 'base64');
  const list = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(out));
  const tFetch = Date.now();
  const names = ['id', 'status', 'variables', 'cost_breakdown', 'transcript', 'cost_total', 'phone',
    'direction', 'assistant_id', 'assistant_name', 'phone_number_id', 'phone_number',
    'campaign_id', 'campaign_name', 'recording_url', 'recording_duration', 'include', 'body'];
  const fetched = list.map((a) => Object.fromEntries(names.map((n, i) => [n, a[i]])));
  if (fetched.length !== rows.length)
    die(`stored ${rows.length} rows but read back ${fetched.length}`);

  // the generator must have stored what it meant: same values after Postgres
  // (jsonb sorts and dedups keys; JSON.parse keeps the last duplicate too)
  for (const f of fetched) {
    const r = byId.get(f.id);
    const pairs = [['variables', r.variables, f.variables], ['cost_breakdown', r.cost_breakdown, f.cost_breakdown],
      ['transcript', r.transcript, f.transcript]];
    for (const [name, mine, theirs] of pairs) {
      if ((mine === null) !== (theirs === null) ||
          (mine !== null && !util.isDeepStrictEqual(norm(JSON.parse(mine)), norm(JSON.parse(theirs)))))
        die(`generator/storage disagree on ${f.id}.${name}:\n  sent   ${mine}\n  stored ${theirs}`);
    }
    for (const c of ['phone', 'direction', 'assistant_id', 'assistant_name', 'phone_number_id',
      'phone_number', 'campaign_id', 'campaign_name', 'recording_url']) {
      if (r[c] !== f[c]) die(`generator/storage disagree on ${f.id}.${c}: sent ${JSON.stringify(r[c])}, stored ${JSON.stringify(f[c])}`);
    }
    f.transcriptWellFormed = r.transcriptWellFormed;
    f.gen = r;
    if (typeof f.body !== 'string') die(`call_payload(${f.id}) returned ${JSON.stringify(f.body)}`);
  }

  const bad = [];
  let bytes = 0;
  for (const f of fetched) {
    bytes += Buffer.byteLength(f.body);
    const problems = check(f);
    if (problems.length) bad.push([f, problems]);
  }
  // the checker must be able to fail: when it found nothing, it has to catch
  // broken variants of the real bodies
  const selfTested = bad.length ? 'skipped (mismatches found)'
    : `caught ${selfTest(fetched)} of the mutants`;
  const covered = coverage(fetched, rows.length >= 1000);

  if (!opts.keep) psql(['-c', "DELETE FROM aloro_webhook.calls WHERE id LIKE 'fuzz\\_%'"]);

  for (const [f, problems] of bad.slice(0, opts.show)) {
    console.log(`--- mismatch in ${f.id} (status ${f.status}, include_recording ${f.include})`);
    console.log(`stored variables:      ${f.variables}`);
    console.log(`stored cost_breakdown: ${f.cost_breakdown}`);
    console.log(`stored cost_total:     ${f.cost_total}`);
    console.log(`stored transcript:     ${f.transcript}`);
    console.log(`body:                  ${f.body}`);
    let again;
    try { again = JSON.stringify(JSON.parse(f.body)); } catch (e) { again = `(unparsable: ${e.message})`; }
    console.log(`stringify(parse(body)):${again === f.body ? ' (same as body)' : ' ' + again}`);
    for (const p of problems) console.log(`  * ${p}`);
  }
  const secs = (ms) => (ms / 1000).toFixed(1);
  console.log(`# seed 0x${opts.seed.toString(16)}: generated and loaded ${rows.length} rows ` +
    `(${(sqlBytes / 1048576).toFixed(1)} MB of SQL) in ${secs(tLoad - t0)}s, fetched in ` +
    `${secs(tFetch - tLoad)}s, checked in ${secs(Date.now() - tFetch)}s; ` +
    `${(bytes / 1048576).toFixed(1)} MB of bodies; checker self-test ${selfTested}`);
  console.log(`# covered: ${covered}`);
  console.log(`${fetched.length} payloads checked, ${bad.length} mismatches`);
  process.exit(bad.length ? 1 : 0);
}

main();
