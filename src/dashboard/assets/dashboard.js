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

  // An action refused (4xx, 5xx): show the API's code and message; the page is unchanged.
  document.addEventListener("htmx:responseError", function (event) {
    var flash = document.getElementById("flash");
    if (!flash) return;
    var text = "HTTP " + event.detail.xhr.status;
    try {
      var error = JSON.parse(event.detail.xhr.responseText);
      text = error.code + ": " + error.message;
    } catch (ignored) {}
    flash.textContent = text;
  });

  // An action done: clear the last refusal and refresh what the page shows (a pause or a
  // grant commits no transition, so the stream would not say so).
  document.addEventListener("htmx:afterRequest", function (event) {
    var verb = event.detail.requestConfig && event.detail.requestConfig.verb;
    if (!event.detail.successful || verb === "get") return;
    var flash = document.getElementById("flash");
    if (flash) flash.textContent = "";
    refreshSoon();
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (!document.hidden) connect();
  });
})();
