// The suite's own origin server (server/server.mjs of http-cache-tests), bound to 127.0.0.1:
// the suite calls server.listen(port), which binds every interface.
// Usage: node origin.mjs SUITE_DIR   (npm_config_port, npm_config_pidfile in the environment)
import http from 'http'
import path from 'path'
import { pathToFileURL } from 'url'

const listen = http.Server.prototype.listen
http.Server.prototype.listen = function (port, ...rest) {
  return listen.call(this, port, '127.0.0.1', ...rest.filter(a => typeof a === 'function'))
}
await import(pathToFileURL(path.join(process.argv[2], 'server', 'server.mjs')).href)
