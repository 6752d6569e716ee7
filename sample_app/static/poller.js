// The story's page: start a task, then poll its status until a final state.
// Polls are built from the shared strategy definitions (sample_app/strategies.json), the same
// ones the lab's Python client uses, so the two follow one logic:
//   poll -> wait for the answer -> if final, stop; on any error, show it and stop;
//   otherwise wait pollIntervalMs and poll again.
(function () {
  "use strict";
  const book = JSON.parse(document.getElementById("strategies").textContent);
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const $ = (id) => document.getElementById(id);

  function newNonce() {
    const bytes = new Uint8Array(8); // NONCE_BYTES in strategies.py
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function pollTarget(strategy, taskId) {
    const path = book.status_path.replace("{task_id}", encodeURIComponent(taskId));
    if (!strategy.nonce_param) return path;
    return path + "?" + new URLSearchParams({ [strategy.nonce_param]: newNonce() });
  }

  function show(uiState, text) {
    document.body.dataset.uiState = uiState;
    $("status").textContent = text;
    $("spinner").hidden = uiState !== "running";
  }

  async function poll(taskId, strategy) {
    let body;
    try {
      const response = await fetch(pollTarget(strategy, taskId), {
        method: "GET",
        headers: strategy.request_headers,
      });
      if (!response.ok) throw new Error("HTTP " + response.status);
      body = await response.json();
    } catch (err) {
      show("errored", "Error: " + err.message);
      return;
    }
    document.body.dataset.taskState = body.state;
    if (book.final_states.includes(body.state)) {
      show(body.state === "SUCCESS" ? "completed" : "errored", "Task " + body.state);
      $("result").hidden = false;
      $("result").textContent = JSON.stringify(body.result ?? body.error ?? null);
      return;
    }
    show("running", "Working... (" + body.state + ")");
    setTimeout(() => poll(taskId, strategy), config.pollIntervalMs);
  }

  async function start() {
    const fix = $("fix").value;
    const strategy = book.strategies[fix];
    $("result").hidden = true;
    show("running", "Starting...");
    let body;
    try {
      const response = await fetch("/tasks", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ fix: fix, duration: config.defaultDuration }),
      });
      if (!response.ok) throw new Error("HTTP " + response.status);
      body = await response.json();
    } catch (err) {
      show("errored", "Error: " + err.message);
      return;
    }
    document.body.dataset.taskId = body.task_id;
    poll(body.task_id, strategy);
  }

  $("start").addEventListener("click", start);
})();
