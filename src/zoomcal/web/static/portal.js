/* zoomcal portal: live updates on top of pages that work without this script. */
(function () {
  "use strict";

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      var args = arguments;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(null, args); }, ms);
    };
  }

  function refresh(target, part, url) {
    var request = new XMLHttpRequest();
    request.open("GET", url || window.location.pathname + window.location.search);
    request.setRequestHeader("X-Zoomcal-Partial", part);
    request.onload = function () {
      if (request.status === 200) {
        target.innerHTML = request.responseText;
        target.setAttribute("data-refreshed", String(Date.now()));
      } else if (request.status === 401) {
        window.location.reload();
      }
    };
    request.send();
  }

  /* The server's time is in the page; a browser clock more than a minute off is told so (times on the page
     come from the server, never from this clock). */
  function checkClock() {
    var meta = document.querySelector('meta[name="zoomcal-server-time"]');
    var banner = document.getElementById("clock-drift");
    if (!meta || !banner || !window.performance) { return; }
    var server = Number(meta.getAttribute("content"));
    var rendered = Date.now() - window.performance.now();
    var drift = rendered - server;
    if (Math.abs(drift) > 60000) {
      var minutes = Math.round(Math.abs(drift) / 60000);
      banner.textContent = "This computer's clock is about " + minutes + " minute" + (minutes === 1 ? "" : "s") +
        (drift > 0 ? " ahead of" : " behind") + " the server's. The times shown come from the server.";
      banner.hidden = false;
      banner.setAttribute("data-drift-ms", String(Math.round(drift)));
    }
  }

  function liveRegions() {
    var regions = document.querySelectorAll("[data-live]");
    Array.prototype.forEach.call(regions, function (region) {
      if (!window.EventSource) { return; }
      var update = debounce(function () {
        refresh(region, region.getAttribute("data-refresh"), region.getAttribute("data-url"));
      }, 300);
      var source = new EventSource(region.getAttribute("data-live"));
      ["run", "account", "presence", "log"].forEach(function (kind) {
        source.addEventListener(kind, update);
      });
    });
  }

  function liveSearch() {
    var inputs = document.querySelectorAll("input[data-live-search]");
    Array.prototype.forEach.call(inputs, function (input) {
      var target = document.getElementById(input.getAttribute("aria-controls"));
      var form = input.form;
      if (!target || !form) { return; }
      var search = debounce(function () {
        var url = form.getAttribute("action") + "?q=" + encodeURIComponent(input.value);
        window.history.replaceState(null, "", url);
        refresh(target, input.getAttribute("data-live-search"), url);
      }, 150);
      input.addEventListener("input", search);
    });
  }

  /* A page on the way to another site's sign-in page goes on at once (its link works without this script). */
  function goOn() {
    var link = document.querySelector("a[data-go]");
    if (link) { window.location.replace(link.href); }
  }

  function start() {
    goOn();
    checkClock();
    liveRegions();
    liveSearch();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
