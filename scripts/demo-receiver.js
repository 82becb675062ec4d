// The demo's receiver: a customer's endpoint that verifies every webhook the
// two ways a receiver may, prints what arrived, and answers 200 (except
// /flaky, which answers 503 to its first two requests to show retries).
//   node scripts/demo-receiver.js SECRET     prints "listening <port>"
const http = require('http');
const crypto = require('crypto');
const secret = process.argv[2];
let flaky = 0;

const hmac = (data) => 'sha256=' + crypto.createHmac('sha256', secret).update(data).digest('hex');

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    const sig = req.headers['x-aloro-signature'];
    // 1. over the raw bytes (recommended); 2. as the public docs' Node.js example does
    const rawOk = sig === hmac(raw);
    const stringifyOk = sig === hmac(JSON.stringify(JSON.parse(raw.toString('utf8'))));
    const fail = req.url === '/flaky' && ++flaky <= 2;
    const data = JSON.parse(raw.toString('utf8')).data;
    console.log(`  receiver: POST ${req.url}  delivery ${req.headers['x-aloro-delivery']}  ` +
                `at ${req.headers['x-aloro-timestamp']}  call ${data.call.id} (${data.call.status})`);
    console.log(`            signature over raw body: ${rawOk ? 'valid' : 'INVALID'}; ` +
                `over JSON.stringify(req.body): ${stringifyOk ? 'valid' : 'INVALID'}` +
                `  -> answering ${fail ? 503 : 200}`);
    res.statusCode = fail ? 503 : 200;
    res.end(fail ? 'try again later' : 'thanks');
  });
}).listen(0, '127.0.0.1', function () {
  console.log('listening ' + this.address().port);
});
process.on('SIGTERM', () => process.exit(0));
