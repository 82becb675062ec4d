#!/usr/bin/env node
// A receiver that verifies Standard Webhooks signatures with the published
// `standardwebhooks` npm package, unmodified (test/receiver/package.json).
//
//   node test/receiver/standard.js --port 0 --log FILE --secret S1[,S2...]
//
// Prints "listening <port>" once it accepts connections, and appends one JSON
// line per request to FILE before answering it:
//
//   {t, path, headers, body, verified: [bool per secret], error: [message per secret]}
//
// verified[i] says Webhook(secret i).verify(raw body, headers) accepted the
// request.  It answers 200 when every secret verified, 401 otherwise.
'use strict';

const http = require('node:http');
const fs = require('node:fs');
const { Webhook } = require('standardwebhooks');

const opts = { port: 0, log: null, secrets: [] };
for (let i = 2; i < process.argv.length; i++) {
	const a = process.argv[i];
	const v = process.argv[i + 1];
	if (a === '--port') { opts.port = Number(v); i++; }
	else if (a === '--log') { opts.log = v; i++; }
	else if (a === '--secret') { opts.secrets = v.split(','); i++; }
	else if (a === '--host') { i++; }
	else { process.stderr.write(`standard: unknown argument ${a}\n`); process.exit(2); }
}
const logFd = opts.log ? fs.openSync(opts.log, 'a') : null;
const verifiers = opts.secrets.map((s) => new Webhook(s));

const server = http.createServer((req, res) => {
	const chunks = [];
	req.on('data', (c) => chunks.push(c));
	req.on('end', () => {
		const raw = Buffer.concat(chunks).toString('utf8');
		const verified = [];
		const errors = [];
		for (const wh of verifiers) {
			try {
				wh.verify(raw, req.headers);
				verified.push(true);
				errors.push(null);
			} catch (e) {
				verified.push(false);
				errors.push(String(e && e.message));
			}
		}
		const line = JSON.stringify({ t: Date.now(), path: req.url, headers: req.headers, body: raw, verified, error: errors });
		if (logFd !== null) fs.writeSync(logFd, line + '\n');
		const ok = verified.length > 0 && verified.every(Boolean);
		res.writeHead(ok ? 200 : 401, { 'Content-Type': 'text/plain' });
		res.end(ok ? 'ok' : 'bad signature');
	});
});
server.listen(opts.port, '127.0.0.1', () => {
	process.stdout.write(`listening ${server.address().port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
