// Live counts on a run page (/ui/runs/RUN): follows the run's server-sent events and updates the numbers and
// bars the server rendered.  Without this script (or EventSource) the page still shows the counts as of load.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || live.getAttribute("data-live") !== "yes" || !window.EventSource) {
    return;
  }
  var STATUSES = ["succeeded", "failed", "blocked", "running", "pending"];
  var ENDED = {
    finished: "The run has finished: these counts are final.",
    idle: "Nothing has run for a while (the submission may have stopped): reload to look again.",
    removed: "The run was removed.",
  };
  var cells = {};
  Array.prototype.forEach.call(document.querySelectorAll("[data-count]"), function (el) {
    cells[el.getAttribute("data-count")] = el;
  });
  var times = {};
  Array.prototype.forEach.call(document.querySelectorAll("[data-time]"), function (el) {
    times[el.getAttribute("data-time")] = el;
  });
  var bars = {};
  Array.prototype.forEach.call(document.querySelectorAll("svg[data-bar]"), function (el) {
    bars[el.getAttribute("data-bar")] = el;
  });
  var failedAtLoad = cells["total::failed"] ? Number(cells["total::failed"].textContent) : 0;
  var hint = document.getElementById("reload-hint");

  function update(kind, name, counts) {
    var prefix = kind + ":" + name + ":";
    var total = 0;
    var known = true;
    STATUSES.forEach(function (s) {
      var n = counts[s] || 0;
      total += n;
      var cell = cells[prefix + s];
      if (!cell) {
        known = false;
        return;
      }
      cell.textContent = String(n);
      cell.classList.toggle(s, n > 0 && s !== "succeeded");
    });
    if (cells[prefix + "total"]) {
      cells[prefix + "total"].textContent = String(total);
    }
    var bar = bars[kind + ":" + name];
    if (bar) {
      var x = 0;
      STATUSES.forEach(function (s) {
        var seg = bar.querySelector('[data-seg="' + s + '"]');
        var width = total ? (100 * (counts[s] || 0)) / total : 0;
        if (seg) {
          seg.setAttribute("x", x.toFixed(3));
          seg.setAttribute("width", width.toFixed(3));
        }
        x += width;
      });
    }
    return known;
  }

  function apply(snap) {
    var known = update("total", "", snap.totals);
    Object.keys(snap.steps).forEach(function (step) {
      update("step", step, snap.steps[step]); // a run without steps has no step rows: nothing to update
    });
    Object.keys(snap.tasks).forEach(function (task) {
      known = update("task", task, snap.tasks[task]) && known;
    });
    Object.keys(snap.times || {}).forEach(function (task) {
      ["wall", "cpu"].forEach(function (what, i) {
        var cell = times[task + ":" + what];
        if (cell) {
          cell.textContent = snap.times[task][i].toFixed(1);
        }
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-state]"), function (badge) {
      badge.className = "badge runstate " + snap.state;
      badge.setAttribute("data-state", snap.state);
      badge.textContent = snap.state;
    });
    if (hint && (!known || (snap.totals.failed || 0) > failedAtLoad)) {
      hint.hidden = false;
    }
  }

  function follow() {
    var source = new EventSource(live.getAttribute("data-events"));
    source.addEventListener("counts", function (event) {
      apply(JSON.parse(event.data));
      live.textContent = "Live: counts updated at " + new Date().toLocaleTimeString() + ".";
    });
    source.addEventListener("end", function (event) {
      var data = JSON.parse(event.data);
      source.close();
      apply(data);
      if (data.reason === "limit") {
        follow();
        return;
      }
      live.className = "live off";
      live.setAttribute("data-live", "ended");
      live.textContent = ENDED[data.reason] || "Live updates stopped: reload to look again.";
    });
  }
  follow();
})();
