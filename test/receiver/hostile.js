#!/usr/bin/env node
// A hostile (or broken) webhook receiver for the aloro_webhook tests
// (Node.js 20, builtins only, raw TCP: no HTTP library stands between the
// test and the bytes on the wire).
//
//   node test/receiver/hostile.js --port 0 --log FILE [--host 127.0.0.1]
//
// Besides the main listener it opens one listener per connection-level
// behaviour (they act before reading anything, so the request path cannot
// choose them) and prints, before "listening <main port>":
//
//   port accept_close <p>     closes (FIN) as soon as a connection is accepted
//   port accept_rst <p>       resets (RST) as soon as a connection is accepted
//   port accept_silent <p>    accepts, never writes (reads and drops what comes)
//   port accept_garbage <p>   writes binary garbage at once and keeps the socket open
//   port accept_noread <p>    accepts, never reads, never writes (a big request body fills the buffers)
//
// On the main listener the request path chooses the behaviour (a query string
// is allowed; ?x=y pairs are arguments):
//
//   /b/ok                     200 "ok", keep-alive
//   /b/status/NNN             status NNN (no body for 1xx/204/304), keep-alive
//   /b/silent                 reads the request, never answers
//   /b/drip                   200 headers (Content-Length 1000000), then one body byte a second
//   /b/drip-head              the status line, then one header byte a second
//   /b/flood/NNN              status NNN, close-delimited body sent as fast as the socket takes it
//   /b/flood-chunked/NNN      status NNN, endless chunked body, as fast as possible
//   /b/header-flood           the status line, then endless header lines, as fast as possible
//   /b/bigheader              200 with a single 1 MB header line, then "ok"
//   /b/close-mid-headers      "HTTP/1.1 200 OK\r\nContent-Type: text/pl" then close
//   /b/garbage                512 random bytes, then close
//   /b/banner                 "SSH-2.0-OpenSSH_9.2p1\r\n", then nothing (socket kept open)
//   /b/badutf8/NNN            status NNN, a body with NUL bytes and invalid UTF-8 between valid text
//   /b/cututf8/NNN?limit=L    status NNN, L-1 'a' then U+1F600 (a 4-byte character cut by a limit of L)
//   /b/http10                 "HTTP/1.0 200 OK" without Content-Length, body, close
//   /b/continue               "100 Continue", then 200 "ok"
//   /b/continue-only          "100 Continue", then nothing
//   /b/rst                    reads the request, then resets the connection
//   /b/close                  reads the request, then closes without a byte
//   /b/redirect/NNN?to=URL    status NNN with Location: URL
//   /b/early                  answers 200 "ok" on the request head, then reads and drops the body
//   /b/early-close            answers 200 "ok" (Connection: close) on the request head and
//                             closes without reading the body
//   /b/partial                200 with Content-Length 100 and 10 body bytes, then close
//   /b/bad-chunked            200 chunked with a chunk size that is not hex, then close
//   /b/smuggle                200 "ok" keep-alive, and 100 ms later an unsolicited second
//                             "200 ok" response on the same connection
//   anything else             404
//
// One JSON line per event is appended to FILE (synchronously, before any
// answer goes out):
//   {ev:"conn",  cid, t, listener}
//   {ev:"req",   cid, t, listener, method, path, headers, delivery, body_bytes, body_sha256}
//        (body_bytes/body_sha256 are null when the behaviour answers before reading the body)
//   {ev:"peer_end", cid, t, listener}      (the client closed its side)
//   {ev:"smuggled", cid, t, listener}      (the unsolicited response of /b/smuggle is written)
//   {ev:"close", cid, t, listener, sent, received}
// t is epoch milliseconds; sent/received count bytes on that connection.
//
// SIGTERM and SIGINT end it at once.
'use strict';

const net = require('node:net');
const crypto = require('node:crypto');
const fs = require('node:fs');

function parseArgs(argv) {
	const opts = { port: 0, host: '127.0.0.1', log: null };
	for (let i = 2; i < argv.length; i++) {
		const a = argv[i];
		const v = argv[i + 1];
		switch (a) {
			case '--port': opts.port = Number(v); i++; break;
			case '--host': opts.host = v; i++; break;
			case '--log': opts.log = v; i++; break;
			default:
				process.stderr.write(`hostile: unknown argument ${a}\n`);
				process.exit(2);
		}
	}
	return opts;
}

const opts = parseArgs(process.argv);
const logFd = opts.log ? fs.openSync(opts.log, 'a') : null;
let nextCid = 1;

function log(entry) {
	if (logFd !== null) {
		fs.writeSync(logFd, JSON.stringify(entry) + '\n');
	}
}

// Wraps a socket: counts bytes, logs the connection and its end.
function track(sock, listener) {
	const st = { cid: nextCid++, listener, sent: 0, received: 0, closed: false, timers: [] };
	log({ ev: 'conn', cid: st.cid, t: Date.now(), listener });
	sock.on('error', () => {});
	// the client hung up (FIN): log it and let the socket go
	sock.on('end', () => {
		log({ ev: 'peer_end', cid: st.cid, t: Date.now(), listener });
		sock.destroy();
	});
	sock.on('close', () => {
		st.closed = true;
		for (const t of st.timers) {
			clearInterval(t);
			clearTimeout(t);
		}
		log({ ev: 'close', cid: st.cid, t: Date.now(), listener, sent: st.sent, received: st.received });
	});
	st.write = (data) => {
		if (st.closed || sock.destroyed) {
			return false;
		}
		const b = Buffer.isBuffer(data) ? data : Buffer.from(data, 'latin1');
		st.sent += b.length;
		return sock.write(b);
	};
	return st;
}

// Sends chunks from next() as fast as the socket takes them, until it closes.
function pump(sock, st, next) {
	const go = () => {
		while (!st.closed && !sock.destroyed) {
			if (!st.write(next())) {
				sock.once('drain', go);
				return;
			}
		}
	};
	go();
}

const garbage = crypto.randomBytes(512);
// make sure it does not start like an HTTP status line
garbage[0] = 0x00;

function statusText(code) {
	return { 100: 'Continue', 200: 'OK', 201: 'Created', 204: 'No Content', 301: 'Moved Permanently',
		302: 'Found', 303: 'See Other', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
		404: 'Not Found', 500: 'Internal Server Error', 503: 'Service Unavailable' }[code] || 'Whatever';
}

function simple(st, code, body, extra) {
	const noBody = (code >= 100 && code < 200) || code === 204 || code === 304;
	const b = noBody ? Buffer.alloc(0) : Buffer.from(body);
	let head = `HTTP/1.1 ${code} ${statusText(code)}\r\nContent-Type: text/plain\r\n`;
	if (!noBody) {
		head += `Content-Length: ${b.length}\r\n`;
	}
	head += extra || '';
	head += '\r\n';
	st.write(Buffer.concat([Buffer.from(head, 'latin1'), b]));
}

// The behaviours that act once a request head (and, unless early, its body) is in.
// Each returns true when the connection may carry another request.
function behave(sock, st, req) {
	const url = new URL(req.path, 'http://hostile.invalid');
	const parts = url.pathname.split('/').filter((p) => p !== '');
	const name = parts[0] === 'b' ? (parts[1] || '') : '';
	const arg = parts[2];
	const code = arg && /^\d{3}$/.test(arg) ? Number(arg) : 200;

	switch (name) {
		case 'ok':
			simple(st, 200, 'ok');
			return true;
		case 'status':
			simple(st, code, `status ${code}`);
			return true;
		case 'silent':
			return false;
		case 'drip': {
			st.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n');
			st.timers.push(setInterval(() => st.write('x'), 1000));
			return false;
		}
		case 'drip-head': {
			const text = 'HTTP/1.1 200 OK\r\nX-Slow: ' + 'y'.repeat(100000);
			let i = 0;
			st.timers.push(setInterval(() => { if (i < text.length) st.write(text[i++]); }, 1000));
			return false;
		}
		case 'flood': {
			st.write(`HTTP/1.1 ${code} ${statusText(code)}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n`);
			const chunk = Buffer.alloc(64 * 1024, 'f');
			pump(sock, st, () => chunk);
			return false;
		}
		case 'flood-chunked': {
			st.write(`HTTP/1.1 ${code} ${statusText(code)}\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n`);
			const data = Buffer.alloc(64 * 1024, 'c');
			const chunk = Buffer.concat([Buffer.from(data.length.toString(16) + '\r\n'), data, Buffer.from('\r\n')]);
			pump(sock, st, () => chunk);
			return false;
		}
		case 'header-flood': {
			st.write('HTTP/1.1 200 OK\r\n');
			let n = 0;
			const filler = 'h'.repeat(1000);
			pump(sock, st, () => `X-Flood-${n++}: ${filler}\r\n`);
			return false;
		}
		case 'bigheader':
			st.write('HTTP/1.1 200 OK\r\nX-Big: ' + 'b'.repeat(1024 * 1024) + '\r\nContent-Length: 2\r\n\r\nok');
			return true;
		case 'close-mid-headers':
			st.write('HTTP/1.1 200 OK\r\nContent-Type: text/pl');
			sock.end();
			return false;
		case 'garbage':
			st.write(garbage);
			sock.end();
			return false;
		case 'banner':
			st.write('SSH-2.0-OpenSSH_9.2p1\r\n');
			return false;
		case 'badutf8': {
			const body = Buffer.concat([
				Buffer.from('pre é😀 ', 'utf8'),
				Buffer.from([0x00]), Buffer.from('nul', 'latin1'), Buffer.from([0x00]),
				Buffer.from([0xff, 0xfe]),					// never valid
				Buffer.from([0xc3, 0x28]),					// bad continuation
				Buffer.from([0xc0, 0xaf]),					// overlong '/'
				Buffer.from([0xed, 0xa0, 0x80]),			// a UTF-16 surrogate
				Buffer.from([0xf4, 0x90, 0x80, 0x80]),		// beyond U+10FFFF
				Buffer.from([0xe2, 0x82]),					// truncated
				Buffer.from(' post', 'latin1'),
			]);
			simple(st, code, body);
			return true;
		}
		case 'cututf8': {
			const limit = Number(url.searchParams.get('limit') || '4096');
			const body = Buffer.concat([Buffer.alloc(limit - 1, 'a'), Buffer.from('😀', 'utf8'), Buffer.from('tail')]);
			simple(st, code, body);
			return true;
		}
		case 'http10':
			st.write('HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhttp10 body');
			sock.end();
			return false;
		case 'continue':
			st.write('HTTP/1.1 100 Continue\r\n\r\n');
			simple(st, 200, 'ok');
			return true;
		case 'continue-only':
			st.write('HTTP/1.1 100 Continue\r\n\r\n');
			return false;
		case 'rst':
			sock.resetAndDestroy();
			return false;
		case 'close':
			sock.end();
			return false;
		case 'redirect': {
			const to = url.searchParams.get('to') || '/b/ok';
			simple(st, code, 'redirecting', `Location: ${to}\r\n`);
			return true;
		}
		case 'partial':
			st.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n0123456789');
			sock.end();
			return false;
		case 'bad-chunked':
			st.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n');
			sock.end();
			return false;
		case 'smuggle':
			simple(st, 200, 'ok');
			st.timers.push(setTimeout(() => {
				simple(st, 200, 'ok');
				log({ ev: 'smuggled', cid: st.cid, t: Date.now(), listener: 'main' });
			}, 100));
			return true;
		default:
			simple(st, 404, 'not found');
			return true;
	}
}

// The main listener: parse requests (keep-alive), dispatch on the path.
function mainConnection(sock) {
	const st = track(sock, 'main');
	let buf = Buffer.alloc(0);
	let state = 'head';		// head | body | drain | done
	let req = null;
	let need = 0;

	const onData = (chunk) => {
		st.received += chunk.length;
		if (state === 'done') {
			return;
		}
		if (state === 'drain') {
			need -= chunk.length;
			if (need <= 0) {
				state = 'head';
				const rest = chunk.subarray(chunk.length + need);
				need = 0;
				buf = Buffer.from(rest);
				if (buf.length) {
					process.nextTick(() => onData(Buffer.alloc(0)));
				}
			}
			return;
		}
		buf = Buffer.concat([buf, chunk]);
		for (;;) {
			if (state === 'head') {
				const end = buf.indexOf('\r\n\r\n');
				if (end < 0) {
					if (buf.length > 1024 * 1024) {
						sock.destroy();
					}
					return;
				}
				const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
				buf = buf.subarray(end + 4);
				const [method, path] = lines[0].split(' ');
				const headers = {};
				for (const l of lines.slice(1)) {
					const i = l.indexOf(':');
					if (i > 0) {
						headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
					}
				}
				req = { method, path, headers, length: Number(headers['content-length'] || '0') };
				const name = (path || '').split('?')[0].split('/')[2] || '';
				if (name === 'early' || name === 'early-close') {
					log({ ev: 'req', cid: st.cid, t: Date.now(), listener: 'main', method, path, headers,
						delivery: headers['x-aloro-delivery'] || null, body_bytes: null, body_sha256: null });
					if (name === 'early-close') {
						st.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
						state = 'done';
						sock.pause();
						// close once the answer is out, with the body unread: the kernel resets
						setTimeout(() => sock.destroy(), 50);
						return;
					}
					simple(st, 200, 'ok');
					need = req.length - buf.length;
					if (need > 0) {
						state = 'drain';
						buf = Buffer.alloc(0);
						return;
					}
					buf = buf.subarray(req.length);
					continue;
				}
				state = 'body';
			}
			if (state === 'body') {
				if (buf.length < req.length) {
					return;
				}
				const body = buf.subarray(0, req.length);
				buf = buf.subarray(req.length);
				log({ ev: 'req', cid: st.cid, t: Date.now(), listener: 'main', method: req.method,
					path: req.path, headers: req.headers, delivery: req.headers['x-aloro-delivery'] || null,
					body_bytes: body.length, body_sha256: crypto.createHash('sha256').update(body).digest('hex') });
				const again = behave(sock, st, req);
				if (!again) {
					state = 'done';
					return;
				}
				state = 'head';
				if (buf.length === 0) {
					return;
				}
			}
		}
	};
	sock.on('data', onData);
}

function listen(listener, onConn, cb) {
	const srv = net.createServer({ allowHalfOpen: true }, onConn);
	srv.on('error', (err) => {
		process.stderr.write(`hostile: ${listener}: ${err.message}\n`);
		process.exit(1);
	});
	srv.listen(listener === 'main' ? opts.port : 0, opts.host, () => cb(srv.address().port));
}

const extra = {
	accept_close: (sock) => { track(sock, 'accept_close'); sock.end(); },
	accept_rst: (sock) => { track(sock, 'accept_rst'); sock.resetAndDestroy(); },
	accept_silent: (sock) => {
		const st = track(sock, 'accept_silent');
		sock.on('data', (c) => { st.received += c.length; });
	},
	accept_noread: (sock) => { track(sock, 'accept_noread'); sock.pause(); },
	accept_garbage: (sock) => {
		const st = track(sock, 'accept_garbage');
		sock.on('data', (c) => { st.received += c.length; });
		st.write(garbage);
	},
};

const names = Object.keys(extra);
const ports = {};
let pending = names.length;
for (const n of names) {
	listen(n, extra[n], (p) => {
		ports[n] = p;
		if (--pending === 0) {
			listen('main', mainConnection, (mp) => {
				for (const k of names) {
					process.stdout.write(`port ${k} ${ports[k]}\n`);
				}
				process.stdout.write(`listening ${mp}\n`);
			});
		}
	});
}

for (const sig of ['SIGTERM', 'SIGINT']) {
	process.on(sig, () => process.exit(0));
}
