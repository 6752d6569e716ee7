// Reports what the page shows to the __labUi binding whenever it changes: the page itself is
// not changed, only watched. Added as an init script, so it runs in every document the page
// loads, before the page's own scripts.
(() => {
  let last = "";
  const report = () => {
    const body = document.body;
    if (!body || typeof window.__labUi !== "function") return;
    const status = document.getElementById("status");
    const snapshot = {
      ui: body.dataset.uiState || null,
      status: status ? status.textContent : "",
      taskId: body.dataset.taskId || null,
      taskState: body.dataset.taskState || null,
      foreignTaskId: body.dataset.foreignTaskId || null,
      retries: Number(body.dataset.retries || 0),
      warnings: Array.from(document.querySelectorAll("#warnings li"), (li) => li.textContent),
    };
    const seen = JSON.stringify(snapshot);
    if (seen === last) return;
    last = seen;
    window.__labUi({ ...snapshot, t: Date.now() / 1000 });
  };
  const watch = () => {
    new MutationObserver(report).observe(document.body, {
      attributes: true, childList: true, characterData: true, subtree: true,
    });
    report();
  };
  if (document.body) watch();
  else document.addEventListener("DOMContentLoaded", watch);
})();
