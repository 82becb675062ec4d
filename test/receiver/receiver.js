#!/usr/bin/env node
// A local webhook receiver for the aloro_webhook tests (Node.js 20, builtins only).
//
//   node test/receiver/receiver.js --port 0 --secret S --log FILE [--host 127.0.0.1]
//
// Prints "listening <port>" on stdout once it accepts connections, and appends
// one JSON line per request to FILE before answering it:
//
//   {t, method, path, headers, body, body_sha256, body_bytes, remote_port,
//    sig_raw_ok, sig_stringify_ok, signed}
//
// t is the arrival time in epoch milliseconds; body is the raw body decoded
// as UTF-8, body_sha256 and body_bytes describe the raw bytes; sig_raw_ok says
// X-Aloro-Signature matched the HMAC-SHA256 of the raw bytes; sig_stringify_ok
// says it matched the HMAC of JSON.stringify(JSON.parse(body)), the way the
// public documentation's Node.js verifier does it; signed says the header was
// present; remote_port is the client's port (the same on a reused connection).
//
// What it answers, by path (a query string is allowed and ignored):
//   /ok, /ok/...          200 "ok"
//   /status/NNN           status NNN, body "status NNN"
//   /fail/K/NAME          500 for the first K requests carrying NAME, then 200 "ok"
//   /slow/MS              200 "ok" after MS milliseconds (?status=NNN: that status instead)
//   /hang                 never answers; the socket stays open
//   /redirect             302 to ?to=... (default /ok); must not be followed
//   /huge                 200 with an 8 MB body (?mb=N for another size)
//   /retry-after/SECS     503 with Retry-After: SECS
//   /too-many-until/SECS  429 with Retry-After: an HTTP date SECS seconds ahead
//   anything else         404
//
// --no-bodies leaves the body out of the log (its sha256 and size stay), for
// tests that send megabytes.
//
// SIGTERM and SIGINT end it at once.
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');

function parseArgs(argv) {
	const opts = { port: 0, host: '127.0.0.1', secret: null, log: null, bodies: true };
	for (let i = 2; i < argv.length; i++) {
		const a = argv[i];
		const v = argv[i + 1];
		switch (a) {
			case '--port': opts.port = Number(v); i++; break;
			case '--host': opts.host = v; i++; break;
			case '--secret': opts.secret = v; i++; break;
			case '--log': opts.log = v; i++; break;
			case '--no-bodies': opts.bodies = false; break;
			default:
				process.stderr.write(`receiver: unknown argument ${a}\n`);
				process.exit(2);
		}
	}
	if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
		process.stderr.write('receiver: --port must be 0..65535\n');
		process.exit(2);
	}
	return opts;
}

const opts = parseArgs(process.argv);
const logFd = opts.log ? fs.openSync(opts.log, 'a') : null;
const failCounts = new Map();

function hmacHex(data) {
	return 'sha256=' + crypto.createHmac('sha256', opts.secret).update(data).digest('hex');
}

function record(req, raw) {
	const sig = req.headers['x-aloro-signature'];
	const signed = sig !== undefined;
	let rawOk = false;
	let stringifyOk = false;
	if (signed && opts.secret !== null) {
		rawOk = sig === hmacHex(raw);
		try {
			stringifyOk = sig === hmacHex(JSON.stringify(JSON.parse(raw.toString('utf8'))));
		} catch (e) {
			stringifyOk = false;
		}
	}
	const entry = {
		t: Date.now(),
		method: req.method,
		path: req.url,
		headers: req.headers,
		body: opts.bodies ? raw.toString('utf8') : null,
		body_sha256: crypto.createHash('sha256').update(raw).digest('hex'),
		body_bytes: raw.length,
		remote_port: req.socket.remotePort,
		sig_raw_ok: rawOk,
		sig_stringify_ok: stringifyOk,
		signed: signed,
	};
	if (logFd !== null) {
		// writeSync: the line is in the file before the answer goes out
		fs.writeSync(logFd, JSON.stringify(entry) + '\n');
	}
}

function reply(res, status, body, headers) {
	res.writeHead(status, Object.assign({ 'Content-Type': 'text/plain' }, headers || {}));
	res.end(body);
}

function answer(req, res) {
	const url = new URL(req.url, 'http://receiver.invalid');
	const parts = url.pathname.split('/').filter((p) => p !== '');
	const head = parts[0] || '';

	if (head === 'ok') {
		return reply(res, 200, 'ok');
	}
	if (head === 'status' && parts.length >= 2 && /^\d{3}$/.test(parts[1])) {
		const code = Number(parts[1]);
		return reply(res, code, `status ${code}`);
	}
	if (head === 'fail' && parts.length >= 3 && /^\d+$/.test(parts[1])) {
		const k = Number(parts[1]);
		const name = parts.slice(2).join('/');
		const seen = failCounts.get(name) || 0;
		failCounts.set(name, seen + 1);
		if (seen < k) {
			return reply(res, 500, `failing ${seen + 1} of ${k}`);
		}
		return reply(res, 200, 'ok');
	}
	if (head === 'slow' && parts.length >= 2 && /^\d+$/.test(parts[1])) {
		const code = Number(url.searchParams.get('status') || '200');
		const timer = setTimeout(() => reply(res, code, code === 200 ? 'ok' : `status ${code}`), Number(parts[1]));
		res.on('close', () => clearTimeout(timer));
		return;
	}
	if (head === 'hang') {
		return;			// never answer; the socket stays open
	}
	if (head === 'redirect') {
		const to = url.searchParams.get('to') || '/ok';
		return reply(res, 302, 'redirecting', { Location: to });
	}
	if (head === 'huge') {
		const mb = Number(url.searchParams.get('mb') || '8');
		const total = Math.max(1, Math.floor(mb * 1024 * 1024));
		const chunk = Buffer.alloc(64 * 1024, 'x');
		res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': String(total) });
		let sent = 0;
		const pump = () => {
			while (sent < total) {
				const n = Math.min(chunk.length, total - sent);
				sent += n;
				if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
					res.once('drain', pump);
					return;
				}
			}
			res.end();
		};
		res.on('error', () => {});
		pump();
		return;
	}
	if (head === 'retry-after' && parts.length >= 2 && /^\d+$/.test(parts[1])) {
		return reply(res, 503, 'busy', { 'Retry-After': parts[1] });
	}
	if (head === 'too-many-until' && parts.length >= 2 && /^\d+$/.test(parts[1])) {
		// 429 with Retry-After as an HTTP date SECS seconds ahead (whole seconds)
		const at = new Date(Math.ceil(Date.now() / 1000) * 1000 + Number(parts[1]) * 1000);
		return reply(res, 429, 'slow down', { 'Retry-After': at.toUTCString() });
	}
	return reply(res, 404, 'not found');
}

const server = http.createServer((req, res) => {
	const chunks = [];
	req.on('data', (c) => chunks.push(c));
	req.on('error', () => {});
	res.on('error', () => {});
	req.on('end', () => {
		const raw = Buffer.concat(chunks);
		try {
			record(req, raw);
		} catch (e) {
			process.stderr.write(`receiver: cannot log request: ${e.message}\n`);
		}
		answer(req, res);
	});
});
server.on('clientError', (err, socket) => {
	if (socket.writable) {
		socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
	}
});
// The slow and hanging paths must not be cut off by Node's own timeouts.
server.requestTimeout = 0;
server.headersTimeout = 0;
server.timeout = 0;

server.listen(opts.port, opts.host, () => {
	process.stdout.write(`listening ${server.address().port}\n`);
});
server.on('error', (err) => {
	process.stderr.write(`receiver: ${err.message}\n`);
	process.exit(1);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
	process.on(sig, () => process.exit(0));
}
