// The suite's CLI (cli.mjs of http-cache-tests) with a client that opens a new connection for
// every request. Node 20's global agent keeps connections alive, so node-fetch sends a request
// on a pooled connection that the cache may be closing at that moment (Apache's event MPM
// closes idle keep-alive connections when its workers are busy): the test then fails with
// "socket hang up" before the cache saw its request, a race of the transport that says
// nothing of the cache's rules and differs from run to run.
// Usage: node cli.mjs SUITE_DIR   (npm_config_base, npm_config_id in the environment)
import http from 'http'
import path from 'path'
import { pathToFileURL } from 'url'

http.globalAgent = new http.Agent({ keepAlive: false })
await import(pathToFileURL(path.join(process.argv[2], 'cli.mjs')).href)
