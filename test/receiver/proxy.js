#!/usr/bin/env node
// A forward HTTP proxy for the tests (Node.js builtins only): absolute-URI
// requests are passed on, CONNECT opens a tunnel.  It resolves names itself:
// --map NAME=ADDR entries first (so a test can use a name only the proxy
// knows), the system resolver otherwise.
//
//   node test/receiver/proxy.js --port 0 --log FILE [--map receiver.test=127.0.0.1]
//
// Prints "listening <port>", and appends one JSON line per request to FILE:
// {t, method, url, host, headers}.
'use strict';

const http = require('node:http');
const net = require('node:net');
const fs = require('node:fs');

const opts = { port: 0, log: null, map: new Map() };
for (let i = 2; i < process.argv.length; i++) {
	const a = process.argv[i];
	const v = process.argv[i + 1];
	if (a === '--port') { opts.port = Number(v); i++; }
	else if (a === '--log') { opts.log = v; i++; }
	else if (a === '--map') { const [n, addr] = v.split('='); opts.map.set(n, addr); i++; }
	else if (a === '--host' || a === '--secret') { i++; }
	else { process.stderr.write(`proxy: unknown argument ${a}\n`); process.exit(2); }
}
const logFd = opts.log ? fs.openSync(opts.log, 'a') : null;
function log(o) { if (logFd !== null) fs.writeSync(logFd, JSON.stringify({ t: Date.now(), ...o }) + '\n'); }
function addr(host) { return opts.map.get(host) || host; }

const server = http.createServer((req, res) => {
	let target;
	try { target = new URL(req.url); } catch (e) { res.writeHead(400); res.end('absolute URI required'); return; }
	log({ method: req.method, url: req.url, host: target.hostname, headers: req.headers });
	const headers = { ...req.headers };
	delete headers['proxy-connection'];
	const up = http.request({
		host: addr(target.hostname), port: target.port || 80, method: req.method,
		path: target.pathname + target.search, headers,
	}, (r) => { res.writeHead(r.statusCode, r.headers); r.pipe(res); });
	up.on('error', () => { res.writeHead(502); res.end('bad gateway'); });
	req.pipe(up);
});
server.on('connect', (req, sock, head) => {
	const [host, port] = req.url.split(':');
	log({ method: 'CONNECT', url: req.url, host, headers: req.headers });
	const up = net.connect(Number(port) || 443, addr(host), () => {
		sock.write('HTTP/1.1 200 Connection Established\r\n\r\n');
		if (head && head.length) up.write(head);
		up.pipe(sock); sock.pipe(up);
	});
	up.on('error', () => sock.destroy());
	sock.on('error', () => up.destroy());
});
server.listen(opts.port, '127.0.0.1', () => process.stdout.write(`listening ${server.address().port}\n`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
