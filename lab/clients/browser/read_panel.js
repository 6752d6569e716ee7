() => Object.fromEntries(
  Array.from(document.querySelectorAll("#debug dd[id^='debug-']"), (dd) => [
    dd.id.slice("debug-".length).replaceAll("-", "_"),
    dd.closest("[hidden]") ? null : dd.textContent,
  ])
)
