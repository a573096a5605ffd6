// The portal's times in the browser's own time zone: each <time datetime> written by the server in UTC
// is rewritten in local time (the UTC value stays in its title), and each "(… ago)" beside one is kept
// current. No framework; served by the application itself.
"use strict";

(function () {
  const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];

  function ago(date) {
    const seconds = (date.getTime() - Date.now()) / 1000;
    if (Math.abs(seconds) < 60) return "just now";
    for (const [unit, size] of UNITS) {
      if (Math.abs(seconds) >= size) return relative.format(Math.round(seconds / size), unit);
    }
    return "just now";
  }

  function localize(root) {
    for (const element of root.querySelectorAll("time[datetime]")) {
      const date = new Date(element.getAttribute("datetime"));
      if (Number.isNaN(date.getTime())) continue;
      if (!element.dataset.utc) element.dataset.utc = element.textContent;
      element.textContent = when.format(date);
      element.title = `${element.dataset.utc} (shown in ${zone})`;
      const next = element.nextElementSibling;
      if (next && next.classList.contains("ago")) next.textContent = `(${ago(date)})`;
    }
  }

  window.xmppauthLocalTime = localize;
  localize(document);
  setInterval(() => localize(document), 30000);
})();
