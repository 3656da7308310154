// Live refresh for the dashboard, with no build step: while the tab is visible, listen to the
// operators' status stream and ask every element marked data-live to refresh itself (htmx
// reloads it from its hx-get) shortly after transitions commit. A hidden tab closes the stream;
// showing it again reconnects and refreshes once. Every htmx request carries the CSRF token.
(function () {
  "use strict";
  var source = null;
  var pending = null;

  function refreshSoon() {
    if (pending) return;
    pending = setTimeout(function () {
      pending = null;
      document.querySelectorAll("[data-live]").forEach(function (element) {
        htmx.trigger(element, "refresh");
      });
    }, 250);
  }

  function connect() {
    if (source || !document.querySelector("[data-live]")) return;
    source = new EventSource("/ops/events");
    source.addEventListener("transition", refreshSoon);
  }

  function disconnect() {
    if (source) {
      source.close();
      source = null;
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      disconnect();
    } else {
      connect();
      refreshSoon();
    }
  });

  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) event.detail.headers["X-CSRF-Token"] = meta.content;
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (!document.hidden) connect();
  });
})();
