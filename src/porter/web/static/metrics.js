// Trend charts on a metric page (/ui/metrics/METRIC): uPlot over the data the server put in a JSON block
// (<script type="application/json">, not executed, so the page's CSP allows it). Spec levels are drawn as
// dashed horizontal lines in the metric's unit, the region failing the minimum level shaded; change-points
// and release runs as vertical lines. Without JavaScript the table under the chart has the same values.
(function () {
  "use strict";
  if (!window.uPlot) {
    return;
  }
  var COLORS = ["#0b5394", "#c2410c", "#047857", "#9d174d", "#6d28d9", "#854d0e", "#1f2937", "#0e7490"];
  var LEVEL_COLORS = { minimum: "#a40e26", design: "#7d4e00", stretch: "#116329" };
  var HEIGHT = 360;

  function fmt(v) {
    if (v === null || v === undefined) {
      return "—";
    }
    return Number(v).toPrecision(4).replace(/\.?0+$/, "").replace(/\.?0+e/, "e");
  }

  function extent(d) {
    var lo = Infinity;
    var hi = -Infinity;
    d.lines.forEach(function (l) {
      l.values.forEach(function (v) {
        if (v !== null) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      });
    });
    d.levels.forEach(function (lv) {
      lo = Math.min(lo, lv.value);
      hi = Math.max(hi, lv.value);
    });
    if (!isFinite(lo)) {
      return [0, 1];
    }
    var pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.05 || 1;
    return [lo - pad, hi + pad];
  }

  function text(ctx, px, words, x, y, color, align) {
    ctx.font = 12 * px + "px system-ui, sans-serif";
    ctx.textAlign = align;
    var w = ctx.measureText(words).width;
    ctx.fillStyle = "rgba(255,255,255,0.85)";
    var left = align === "right" ? x - w - 2 * px : x - 2 * px;
    ctx.fillRect(left, y - 12 * px, w + 4 * px, 15 * px);
    ctx.fillStyle = color;
    ctx.fillText(words, x, y);
  }

  function shade(d) {
    // Below (or above) the least demanding level: the region where the metric fails its minimum.
    return function (u) {
      var minimum = d.levels.filter(function (lv) { return lv.level === "minimum"; })[0];
      if (!minimum) {
        return;
      }
      var ctx = u.ctx;
      var b = u.bbox;
      var y = u.valToPos(minimum.value, "y", true);
      var lowerIsFailing = minimum.operator === ">=" || minimum.operator === ">";
      var top = lowerIsFailing ? Math.max(y, b.top) : b.top;
      var bottom = lowerIsFailing ? b.top + b.height : Math.min(y, b.top + b.height);
      if (bottom > top) {
        ctx.save();
        ctx.fillStyle = "rgba(164,14,38,0.07)";
        ctx.fillRect(b.left, top, b.width, bottom - top);
        ctx.restore();
      }
    };
  }

  function marks(d) {
    return function (u) {
      var ctx = u.ctx;
      var b = u.bbox;
      var px = uPlot.pxRatio || 1;
      ctx.save();
      ctx.lineWidth = 1.5 * px;
      d.levels.forEach(function (lv) {
        var y = u.valToPos(lv.value, "y", true);
        var color = LEVEL_COLORS[lv.level] || "#57606a";
        ctx.strokeStyle = color;
        ctx.setLineDash([6 * px, 4 * px]);
        ctx.beginPath();
        ctx.moveTo(b.left, y);
        ctx.lineTo(b.left + b.width, y);
        ctx.stroke();
        text(ctx, px, lv.level + " " + lv.operator + " " + fmt(lv.value) + (d.unit ? " " + d.unit : ""),
          b.left + b.width - 4 * px, y - 4 * px, color, "right");
      });
      d.changes.forEach(function (c) {
        var x = u.valToPos(c.index - 0.5, "x", true);
        ctx.strokeStyle = "#6d28d9";
        ctx.setLineDash([2 * px, 3 * px]);
        ctx.beginPath();
        ctx.moveTo(x, b.top);
        ctx.lineTo(x, b.top + b.height);
        ctx.stroke();
        text(ctx, px, "change-point", x + 4 * px, b.top + 14 * px, "#5b21b6", "left");
      });
      d.releases.forEach(function (r) {
        var x = u.valToPos(r.index, "x", true);
        ctx.strokeStyle = "#14213d";
        ctx.setLineDash([]);
        ctx.beginPath();
        ctx.moveTo(x, b.top);
        ctx.lineTo(x, b.top + b.height);
        ctx.stroke();
        text(ctx, px, r.release, x + 4 * px, b.top + 30 * px, "#14213d", "left");
      });
      ctx.restore();
    };
  }

  function draw(el, d) {
    var n = d.runs.length;
    var xs = [];
    for (var i = 0; i < n; i++) {
      xs.push(i);
    }
    var unit = d.unit ? " " + d.unit : "";
    var series = [{ label: "Run", value: function (u, v) { return v === null ? "" : d.runs[v] || ""; } }];
    d.lines.forEach(function (l, i) {
      series.push({
        label: l.label,
        stroke: COLORS[i % COLORS.length],
        width: 2,
        spanGaps: true,
        points: { show: true, size: 7 },
        value: function (u, v) { return v === null ? "—" : fmt(v) + unit; },
      });
    });
    var opts = {
      width: Math.max(el.clientWidth, 320),
      height: HEIGHT,
      scales: {
        // room on the right for the levels' labels, so they never cover the latest runs' points
        x: { time: false, range: [-0.5, Math.max(n - 0.5, 0.5) + (d.levels.length ? Math.max(0.9, n * 0.14) : 0)] },
        y: { range: extent(d) },
      },
      axes: [
        {
          label: "Run",
          incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
          space: 70,
          values: function (u, splits) {
            return splits.map(function (s) { return Number.isInteger(s) && s >= 0 && s < n ? d.labels[s] : ""; });
          },
        },
        { label: d.unit ? d.metric + " [" + d.unit + "]" : d.metric, size: 64 },
      ],
      series: series,
      cursor: { points: { size: 8 } },
      hooks: { drawClear: [shade(d)], draw: [marks(d)] },
    };
    var data = [xs].concat(d.lines.map(function (l) { return l.values; }));
    var plot = new uPlot(opts, data, el);
    var pending = null;
    window.addEventListener("resize", function () {
      if (pending) {
        window.cancelAnimationFrame(pending);
      }
      pending = window.requestAnimationFrame(function () {
        plot.setSize({ width: Math.max(el.clientWidth, 320), height: HEIGHT });
      });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-chart]"), function (el) {
    var source = document.getElementById(el.getAttribute("data-chart"));
    if (!source) {
      return;
    }
    draw(el, JSON.parse(source.textContent));
  });
})();
