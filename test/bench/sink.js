// A minimal receiver for benchmarks: answers every request 200 "ok" and keeps
// a count, written to the file named by its second argument every 100 ms.
//   node test/bench/sink.js COUNTFILE     prints "listening <port>"
const http = require('http');
const fs = require('fs');
const countFile = process.argv[2];
let n = 0;
http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => { n++; res.end('ok'); });
}).listen(0, '127.0.0.1', function () {
  console.log('listening ' + this.address().port);
});
setInterval(() => fs.writeFileSync(countFile, String(n)), 100);
process.on('SIGTERM', () => { fs.writeFileSync(countFile, String(n)); process.exit(0); });
