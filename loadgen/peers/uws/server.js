// uWebSockets.js peer for loadgen: fanout's client contract with uWS's own pub/sub.
// The channel is the first offered Sec-WebSocket-Protocol value (echoed in the 101); each
// message goes to every other subscriber of the channel (ws.publish excludes the sender).
// Usage: node server.js [HOST:PORT]   (default 127.0.0.1:9003)
// UWS_COMPRESSION=shared turns permessage-deflate on with uWS.SHARED_COMPRESSOR (no sliding
// window kept per connection); unset or `off`: no compression (the default).
// With UWS_CERT and UWS_KEY (PEM files) set it serves wss:// (uWS.SSLApp), as compare.sh --tls.
'use strict';
const uWS = require('uwebsockets');

const [host, port] = (process.argv[2] || '127.0.0.1:9003').split(':');
const compressions = { off: uWS.DISABLED, shared: uWS.SHARED_COMPRESSOR };
const compression = compressions[process.env.UWS_COMPRESSION || 'off'];
if (compression === undefined) {
  console.error(`uWS peer: UWS_COMPRESSION must be one of ${Object.keys(compressions)}`);
  process.exit(2);
}

const app = process.env.UWS_CERT
  ? uWS.SSLApp({ cert_file_name: process.env.UWS_CERT, key_file_name: process.env.UWS_KEY })
  : uWS.App();

app.ws('/*', {
  compression,
  maxPayloadLength: 16 * 1024 * 1024,
  maxBackpressure: 64 * 1024 * 1024,
  idleTimeout: 120,
  upgrade: (res, req, context) => {
    const channel = req.getHeader('sec-websocket-protocol').split(',')[0].trim();
    if (!channel) {
      res.writeStatus('400 Bad Request').end('offer a channel in Sec-WebSocket-Protocol\n');
      return;
    }
    res.upgrade({ channel }, req.getHeader('sec-websocket-key'), channel,
      req.getHeader('sec-websocket-extensions'), context);
  },
  open: (ws) => { ws.subscribe(ws.getUserData().channel); },
  // publish() compresses only when asked to (its fourth argument, default false).
  message: (ws, message, isBinary) => {
    ws.publish(ws.getUserData().channel, message, isBinary, compression !== uWS.DISABLED);
  },
}).listen(host, Number(port), (token) => {
  if (!token) {
    console.error(`uWS peer: cannot listen on ${host}:${port}`);
    process.exit(1);
  }
  console.error(`uWS peer: listening on ${host}:${port}`);
});
