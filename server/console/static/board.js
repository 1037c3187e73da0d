// The board: live updates from the change stream, and drag and drop onto a row or the tray.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]').content;

  function replaceBoard(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("board");
    var current = document.getElementById("board");
    if (fresh && current) {
      var open = Array.prototype.map.call(current.querySelectorAll("details[open]"),
        function (d) { return d.closest(".visit").id; });
      var status = document.getElementById("live").textContent;
      current.replaceWith(fresh);
      open.forEach(function (id) {
        var d = document.querySelector("#" + id + " details");
        if (d) { d.open = true; }
      });
      document.getElementById("live").textContent = status;
      wireDrops();
    }
  }

  function reload() {
    return fetch(window.location.href, {credentials: "same-origin"})
      .then(function (r) { return r.text(); }).then(replaceBoard);
  }

  function move(visit, technician) {
    var body = new URLSearchParams();
    body.set("csrf", csrf);
    body.set("technician", technician);
    body.set("date", visit.dataset.date);
    body.set("time", visit.dataset.time);
    body.set("version", visit.dataset.version);
    var form = visit.querySelector("form");
    return fetch(form.action, {method: "POST", body: body, credentials: "same-origin",
                               headers: {"X-CSRF-Token": csrf}})
      .then(function (r) { return r.text(); }).then(replaceBoard);
  }

  function wireDrops() {
    document.querySelectorAll(".visit").forEach(function (visit) {
      visit.addEventListener("dragstart", function (e) {
        e.dataTransfer.setData("text/plain", visit.id);
      });
    });
    document.querySelectorAll(".drop").forEach(function (zone) {
      zone.addEventListener("dragover", function (e) { e.preventDefault(); zone.classList.add("over"); });
      zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
      zone.addEventListener("drop", function (e) {
        e.preventDefault();
        zone.classList.remove("over");
        var visit = document.getElementById(e.dataTransfer.getData("text/plain"));
        if (visit) { move(visit, zone.dataset.technician); }
      });
    });
  }

  function listen() {
    var board = document.getElementById("board");
    var source = new EventSource(board.dataset.stream + "?after=" + board.dataset.latest);
    var pending = false;
    // The board is replaced on every reload: find the status line anew each time.
    function say(text) { document.getElementById("live").textContent = text; }
    source.onopen = function () { say("Live updates: on"); };
    source.onerror = function () { say("Live updates: reconnecting…"); };
    source.addEventListener("change", function () {
      if (pending) { return; }
      pending = true;
      setTimeout(function () { reload().finally(function () { pending = false; }); }, 50);
    });
  }

  wireDrops();
  listen();
}());
