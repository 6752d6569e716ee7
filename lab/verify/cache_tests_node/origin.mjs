// The suite's own origin server (server/server.mjs of http-cache-tests), bound to 127.0.0.1:
// the suite calls server.listen(port), which binds every interface.
// Usage: node origin.mjs SUITE_DIR   (npm_config_port, npm_config_pidfile in the environment)
import http from 'http'
import path from 'path'
import { pathToFileURL } from 'url'

// Idle keep-alive connections are kept for the whole run (Node closes them after 5 s by
// default): the cache in front reuses its upstream connections, and one the origin closes just
// as the cache sends on it failed that request with a 502 (mitmproxy: "server closed
// connection"; Apache too: "502 Proxy Error"), a race of the transport between the harness's
// origin and the cache that says nothing of the cache's rules.
const IDLE_KEEP_ALIVE_MS = 300000
const listen = http.Server.prototype.listen
http.Server.prototype.listen = function (port, ...rest) {
  this.keepAliveTimeout = IDLE_KEEP_ALIVE_MS
  return listen.call(this, port, '127.0.0.1', ...rest.filter(a => typeof a === 'function'))
}
await import(pathToFileURL(path.join(process.argv[2], 'server', 'server.mjs')).href)
