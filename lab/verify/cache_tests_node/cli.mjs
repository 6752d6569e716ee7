// The suite's CLI (cli.mjs of http-cache-tests) with a client that lets go of an idle
// connection after 2 s. Node 20's global agent keeps one for 5 s, as long as Apache's
// KeepAliveTimeout: node-fetch then sends a request on a pooled connection that the cache is
// closing at that moment, and the test fails with "socket hang up" before the cache saw its
// request, a race of the transport that says nothing of the cache's rules and differs from
// run to run. (No keep-alive at all made the lab's own proxy slow enough under the suite's
// burst of requests to fail tests that allow 2 s between two requests.)
// Usage: node cli.mjs SUITE_DIR   (npm_config_base, npm_config_id in the environment)
import http from 'http'
import path from 'path'
import { pathToFileURL } from 'url'

http.globalAgent = new http.Agent({ keepAlive: true, timeout: 2000 })
await import(pathToFileURL(path.join(process.argv[2], 'cli.mjs')).href)
