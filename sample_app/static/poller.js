// The story's page: start a task, then follow its status until a final state.
// Everything is built from the shared strategy definitions (sample_app/strategies.json), the same
// ones the server and the lab's Python client (lab/client.py) use, so the three follow one logic:
//   poll transport: poll -> wait for the answer -> final state or leak: stop; otherwise wait
//     pollIntervalMs and poll again. A failed request (no answer, 5xx, 429) is sent again after
//     the strategy's backoff, at most retry.attempts times in a row; then, or on any other
//     failure, show the error and stop. detect_stale switches to a nonce once the same answer
//     came back too often.
//   sse transport: one EventSource; each event is handled like a poll's answer; a stream that
//     fails or ends before a final state is reopened after the same backoff.
// makeLogic holds the rules as pure functions of the definitions; under Node it is exported
// alone, so the tests can check it against the Python side.
(function () {
  "use strict";

  function makeLogic(book) {
    function fill(template, taskId) {
      return template.replace("{task_id}", encodeURIComponent(taskId));
    }

    // How each nonce kind changes a target (strategies.add_nonce in Python).
    const nonceKinds = {
      query: (target, nonce) =>
        target +
        (target.includes("?") ? "&" : "?") +
        new URLSearchParams({ [book.nonce.query_param]: nonce }),
      path: (target, nonce) => {
        const at = target.indexOf("?");
        if (at < 0) return target + "/" + nonce;
        return target.slice(0, at) + "/" + nonce + target.slice(at);
      },
    };

    function newNonce() {
      const bytes = new Uint8Array(book.nonce.bytes);
      crypto.getRandomValues(bytes);
      return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    }

    function statusTarget(style, taskId, nonceKind, nonce) {
      const target = fill(book.status_paths[style], taskId);
      if (!nonceKind) return target;
      return nonceKinds[nonceKind](target, nonce || newNonce());
    }

    // Milliseconds before the n-th retry (1-based).
    function retryDelayMs(retry, n) {
      return retry.initial_ms * Math.pow(retry.factor, n - 1);
    }

    // A failed request worth sending again: no answer at all (status null), a 5xx or a 429.
    function isRetryable(status) {
      return status === null || status >= 500 || status === 429;
    }

    function isStatus(body) {
      return typeof body === "object" && body !== null && typeof body.state === "string";
    }

    // The same served_at and seq on spec.after_polls answers in a row while our clock moved.
    function staleWatch(spec, clock) {
      const now = clock || (() => performance.now());
      let key = null;
      let count = 0;
      let firstSeen = 0;
      return {
        saw(body) {
          const at = now();
          const servedAt = body.served_at ?? null;
          const seq = body.seq ?? null;
          if (servedAt === null && seq === null) {
            key = null;
            count = 0;
            return false;
          }
          const seen = JSON.stringify([servedAt, seq]);
          if (seen !== key) {
            key = seen;
            count = 1;
            firstSeen = at;
            return false;
          }
          count += 1;
          return count >= spec.after_polls && at > firstSeen;
        },
      };
    }

    function staleWarning(spec) {
      return (
        "stale answers detected after " +
        spec.after_polls +
        " polls; switched to " +
        spec.switch_to_nonce +
        "-nonce"
      );
    }

    // The debug panel's lines. A time of day in UTC, to the millisecond.
    function clockTime(epochSeconds) {
      return new Date(epochSeconds * 1000).toISOString().slice(11, 23) + " UTC";
    }

    // A status answer as received: state, served_at, seq.
    function describeStatus(body) {
      const parts = [body.state];
      if (typeof body.served_at === "number") parts.push("served_at " + clockTime(body.served_at));
      if (body.seq !== undefined && body.seq !== null) parts.push("seq " + body.seq);
      return parts.join(", ");
    }

    // The origin's truth about the task (its debug endpoint's answer), elapsedS seconds after
    // it came: "finished N s ago" once the result backend holds a finish date.
    function describeTruth(truth, elapsedS) {
      if (truth.error) return "unknown (" + truth.error + ")";
      if (typeof truth.finished_ago_s !== "number") {
        return "not finished (" + (truth.state || "unknown") + ")";
      }
      const ago = Math.max(0, Math.floor(truth.finished_ago_s + (elapsedS || 0)));
      return "finished " + ago + " s ago (" + truth.state + ")";
    }

    return {
      fill,
      statusTarget,
      retryDelayMs,
      isRetryable,
      isStatus,
      staleWatch,
      staleWarning,
      describeStatus,
      describeTruth,
    };
  }

  if (typeof module === "object" && module.exports) {
    module.exports = { makeLogic };
    return;
  }

  const book = JSON.parse(document.getElementById("strategies").textContent);
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const logic = makeLogic(book);
  // Where the app is mounted ("" at the root; /_lab/<cell> in the lab's matrix): every URL the
  // page requests is below it, like the links the server renders.
  const basePath = document.body.dataset.basePath || "";
  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  let current = 0; // each Start is a new run; an older run's poller stops at its next step
  let wakeTruth = () => {}; // ends the debug panel's wait before its next question

  class RequestFailed extends Error {
    constructor(message, status) {
      super(message);
      this.status = status; // null: no answer at all
    }
  }

  // "HTTP 500", with the app's own reason when its answer gives one (as the lab's client does).
  async function httpError(response) {
    let reason = null;
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") reason = body.error;
    } catch (err) {
      // not JSON: the status code alone
    }
    return "HTTP " + response.status + (reason ? ": " + reason : "");
  }

  function show(uiState, text) {
    document.body.dataset.uiState = uiState;
    $("status").textContent = text;
    $("spinner").hidden = uiState !== "running";
    if (uiState !== "running") wakeTruth(); // stopped: the debug panel asks at once
  }

  function warn(message) {
    const item = document.createElement("li");
    item.textContent = message;
    $("warnings").append(item);
    $("warnings").hidden = false;
    document.body.dataset.warned = "true";
  }

  // What the page does with one status answer; true when the UI stops.
  function handleAnswer(taskId, body) {
    if (body.task_id != null && body.task_id !== taskId) {
      document.body.dataset.foreignTaskId = body.task_id;
      show("leaked", "Showing another user's task! (" + body.task_id + ")");
      return true;
    }
    document.body.dataset.taskState = body.state;
    if (book.final_states.includes(body.state)) {
      show(body.state === "SUCCESS" ? "completed" : "errored", "Task " + body.state);
      $("result").hidden = false;
      $("result").textContent = JSON.stringify(body.result ?? body.error ?? null);
      return true;
    }
    show("running", "Working... (" + body.state + ")");
    return false;
  }

  // -- the debug panel: what the page was told against what is true. It only ever writes its
  // own elements: whatever happens here, the poller behaves as without it.
  const DEBUG_EVERY_MS = 1000; // asking the origin
  const DEBUG_TICK_MS = 250; // counting on, once it said when the task finished
  // [header name, element id, shown even when absent], from the page's config.
  const debugHeaders = (config.debugHeaders || []).map(([name, always]) => [
    name,
    "debug-" + name.toLowerCase(),
    always,
  ]);

  function debugReset() {
    $("debug").hidden = false;
    $("debug-status").textContent = "-";
    for (const [, id, always] of debugHeaders) {
      $(id).textContent = "-";
      $(id + "-row").hidden = !always;
    }
    $("debug-truth").textContent = "-";
  }

  // One status answer as the page got it; headers null for an event of the stream (an event
  // has no headers of its own).
  function debugSaw(body, headers) {
    try {
      $("debug-status").textContent = logic.describeStatus(body);
      for (const [name, id, always] of debugHeaders) {
        const value = headers ? headers.get(name) : null;
        $(id).textContent = value ?? (headers ? "(none)" : "(an event: no headers)");
        $(id + "-row").hidden = !always && value === null;
      }
    } catch (err) {
      // The panel never stops the page.
    }
  }

  // Asks the origin's debug endpoint (POST, answered no-store: no cache keeps it; the lab does
  // not count it as a poll) about once a second while the run lasts, until the result backend
  // holds a finish date; from then on the page counts the seconds itself.
  async function watchTruth(run, taskId) {
    const url = basePath + logic.fill(config.debugPath, taskId);
    let truth = null;
    let at = 0;
    const render = () => {
      if (run !== current || !truth) return;
      const text = logic.describeTruth(truth, (performance.now() - at) / 1000);
      if ($("debug-truth").textContent !== text) $("debug-truth").textContent = text;
    };
    while (run === current) {
      try {
        const response = await fetch(url, { method: "POST" }); // no cache answers a POST
        const body = await response.json();
        if (run !== current) return;
        truth = body;
        at = performance.now();
        render();
      } catch (err) {
        if (run !== current) return;
        $("debug-truth").textContent = "could not ask the server: " + err.message;
      }
      if (truth && typeof truth.finished_ago_s === "number") break;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, DEBUG_EVERY_MS);
        wakeTruth = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wakeTruth = () => {};
    }
    const timer = setInterval(() => {
      if (run === current) render();
      else clearInterval(timer);
    }, DEBUG_TICK_MS);
  }

  async function retryAfter(n, retry, why) {
    document.body.dataset.retries = String(Number(document.body.dataset.retries || 0) + 1);
    show("running", "Retrying (" + n + "/" + retry.attempts + ") after: " + why);
    await sleep(logic.retryDelayMs(retry, n));
  }

  async function requestStatus(url, poll) {
    const init = {
      method: poll.method,
      headers: { ...poll.request_headers },
      cache: poll.fetch_cache, // "default": the browser cache revalidates what it kept
    };
    if (poll.body !== null) {
      init.body = JSON.stringify(poll.body);
      init.headers["Content-Type"] = "application/json";
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw new RequestFailed(err.message, null);
    }
    if (!response.ok) throw new RequestFailed(await httpError(response), response.status);
    let body;
    try {
      body = await response.json();
    } catch (err) {
      throw new RequestFailed("unreadable status answer: " + err.message, response.status);
    }
    if (!logic.isStatus(body)) {
      throw new RequestFailed("unreadable status answer: no state", response.status);
    }
    debugSaw(body, response.headers);
    return body;
  }

  async function pollLoop(run, taskId, strategy) {
    const retry = strategy.retry;
    let watch = strategy.detect_stale ? logic.staleWatch(strategy.detect_stale) : null;
    let nonceKind = strategy.poll.nonce;
    let failures = 0;
    while (run === current) {
      let body;
      try {
        const target = logic.statusTarget(config.statusUrlStyle, taskId, nonceKind);
        body = await requestStatus(basePath + target, strategy.poll);
      } catch (err) {
        if (run !== current) return;
        if (logic.isRetryable(err.status) && failures < retry.attempts) {
          failures += 1;
          await retryAfter(failures, retry, err.message);
          continue;
        }
        show("errored", "Error: " + err.message);
        return;
      }
      if (run !== current) return;
      failures = 0;
      if (handleAnswer(taskId, body)) return;
      if (watch && watch.saw(body)) {
        nonceKind = strategy.detect_stale.switch_to_nonce;
        warn(logic.staleWarning(strategy.detect_stale));
        watch = null;
      }
      await sleep(config.pollIntervalMs);
    }
  }

  function eventStream(run, taskId, strategy) {
    const retry = strategy.retry;
    const url = basePath + logic.fill(book.events_path, taskId);
    let failures = 0;
    function connect() {
      if (run !== current) return;
      const source = new EventSource(url);
      source.onmessage = (event) => {
        if (run !== current) {
          source.close();
          return;
        }
        failures = 0;
        let body = null;
        try {
          body = JSON.parse(event.data);
        } catch (err) {
          body = null;
        }
        if (!logic.isStatus(body)) {
          source.close();
          show("errored", "Error: unreadable status answer");
          return;
        }
        debugSaw(body, null);
        if (handleAnswer(taskId, body)) source.close();
      };
      source.onerror = () => {
        // A refused connection, an HTTP error, or a stream that ended: EventSource does not say
        // which, so each counts as a failure worth retrying. It would reconnect on its own, but
        // without the strategy's backoff and limit: close it and do that here.
        source.close();
        if (run !== current) return;
        if (failures < retry.attempts) {
          failures += 1;
          retryAfter(failures, retry, "the event stream failed").then(connect);
          return;
        }
        show("errored", "Error: the event stream failed");
      };
    }
    connect();
  }

  const transports = { poll: pollLoop, sse: eventStream };

  async function start() {
    const run = ++current;
    const fix = $("fix").value;
    const strategy = book.strategies[fix];
    $("result").hidden = true;
    $("warnings").replaceChildren();
    $("warnings").hidden = true;
    for (const key of ["taskState", "foreignTaskId", "retries", "warned"]) {
      delete document.body.dataset[key];
    }
    show("running", "Starting...");
    debugReset();
    let body;
    try {
      const response = await fetch(basePath + "/tasks", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ fix: fix, duration: config.defaultDuration }),
      });
      if (!response.ok) throw new Error(await httpError(response));
      body = await response.json();
    } catch (err) {
      if (run === current) show("errored", "Error: " + err.message);
      return;
    }
    if (run !== current) return;
    document.body.dataset.taskId = body.task_id;
    transports[strategy.transport](run, body.task_id, strategy); // sends its first request now
    watchTruth(run, body.task_id);
  }

  $("start").addEventListener("click", start);
})();
