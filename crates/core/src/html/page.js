// Draws each chart described in #charts-data with uPlot. No network access.
(function () {
  "use strict";
  var specs = JSON.parse(document.getElementById("charts-data").textContent || "[]");
  var palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

  function unitFmt(unit) {
    switch (unit) {
      case "ms": return function (v) { return v == null ? "" : (v >= 1000 ? (v / 1000).toFixed(2) + "s" : (+v.toFixed(2)) + "ms"); };
      case "seconds": return function (v) { return v == null ? "" : (+v.toFixed(2)) + "s"; };
      case "percent": return function (v) { return v == null ? "" : (+v.toFixed(2)) + "%"; };
      case "per_second": return function (v) { return v == null ? "" : (+v.toFixed(1)) + "/s"; };
      case "ratio": return function (v) { return v == null ? "" : v.toFixed(2) + "×"; };
      case "bytes": return function (v) {
        if (v == null) return "";
        var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
        while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
        return (i ? v.toFixed(1) : v.toFixed(0)) + " " + u[i];
      };
      default: return function (v) { return v == null ? "" : String(+v.toFixed(2)); };
    }
  }

  function xFmt(axis) {
    if (axis === "elapsed") {
      return function (v) {
        if (v == null) return "";
        var s = Math.round(v), m = Math.floor(s / 60);
        return m + ":" + String(s % 60).padStart(2, "0");
      };
    }
    return function (v) { return v == null ? "" : String(+v.toFixed(2)); };
  }

  function marksPlugin(marks) {
    return {
      hooks: {
        // drawn with the axes, before the series: the data stays on top
        drawAxes: [function (u) {
          var ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#888";
          ctx.fillStyle = "#555";
          ctx.setLineDash([4, 4]);
          ctx.lineWidth = 1;
          ctx.font = Math.round(10 * devicePixelRatio) + "px sans-serif";
          // uPlot leaves the context as its last axis drew (right-aligned values)
          ctx.textAlign = "left";
          ctx.textBaseline = "alphabetic";
          // Marks at the same place share a place: their labels are stacked, one per
          // line, on the first free lines that do not overlap a label before them. A
          // label that would leave the plot is drawn to the left of its line; each
          // has a light background, so a later mark's line does not strike it out.
          var line = 12 * devicePixelRatio;
          var rows = Math.max(1, Math.floor(u.bbox.height / line) - 1);
          var rowEnds = [];
          for (var r = 0; r < rows; r++) rowEnds.push(-Infinity);
          var right = u.bbox.left + u.bbox.width;
          var groups = marks
            .map(function (m) { return { x: Math.round(u.valToPos(m.x, "x", true)), labels: [m.label] }; })
            .sort(function (a, b) { return a.x - b.x; })
            .reduce(function (acc, m) {
              var last = acc[acc.length - 1];
              if (last && m.x - last.x < 2) { last.labels.push(m.labels[0]); } else { acc.push(m); }
              return acc;
            }, []);
          groups.forEach(function (g) {
            ctx.beginPath();
            ctx.moveTo(g.x, u.bbox.top);
            ctx.lineTo(g.x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          });
          ctx.setLineDash([]);
          groups.forEach(function (g) {
            var w = Math.max.apply(null, g.labels.map(function (l) { return ctx.measureText(l).width; }));
            var left = g.x + 3 + w > right && g.x - 3 - w >= u.bbox.left ? g.x - 3 - w : g.x + 3;
            var n = Math.min(g.labels.length, rows);
            var first = 0;
            while (first + n <= rows) {
              var free = true;
              for (var k = first; k < first + n; k++) { if (left <= rowEnds[k] + 4) { free = false; break; } }
              if (free) break;
              first++;
            }
            if (first + n > rows) return;
            var shown = g.labels.slice(0, n);
            var top = u.bbox.top + line * first + 2 * devicePixelRatio;
            ctx.fillStyle = "rgba(255,255,255,0.85)";
            ctx.fillRect(left - 1, top, w + 2, line * n);
            ctx.fillStyle = "#555";
            shown.forEach(function (label, k) {
              ctx.fillText(label, left, u.bbox.top + line * (first + k + 1));
              rowEnds[first + k] = left + w;
            });
          });
          ctx.restore();
        }]
      }
    };
  }

  var drawn = {};
  specs.forEach(function (spec) {
    var fig = document.querySelector('figure[data-chart="' + spec.id + '"] .plot');
    if (!fig) return;
    var fmt = unitFmt(spec.unit);
    var data = [spec.x];
    // the legend shows the values under the cursor, a dash while it is off the plot
    var shown = function (f) { return function (u, v) { return v == null ? "\u2013" : f(v); }; };
    var series = [{ label: spec.x_label, value: shown(xFmt(spec.x_axis)) }];
    spec.series.forEach(function (s, i) {
      data.push(s.values);
      series.push({
        label: s.label,
        stroke: palette[i % palette.length],
        width: 1.5,
        dash: s.dashed ? [6, 4] : undefined,
        spanGaps: false,
        value: shown(fmt)
      });
    });
    spec.levels.forEach(function (l) {
      data.push(spec.x.map(function () { return l.value; }));
      series.push({ label: l.label, stroke: "#c00", width: 1, dash: [2, 3], points: { show: false },
                    value: shown(fmt) });
    });
    var width = Math.max(320, Math.min(fig.clientWidth || 900, 1100));
    var opts = {
      width: width,
      height: 260,
      scales: { x: { time: spec.x_axis === "time" } },
      axes: [
        { values: spec.x_axis === "time" ? undefined : function (u, vals) { return vals.map(xFmt(spec.x_axis)); },
          // a number axis counts things (routes, statements, steps): whole ticks only
          incrs: spec.x_axis === "number" ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
            // elapsed seconds: whole seconds, then whole minutes and hours
            : spec.x_axis === "elapsed" ? [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400]
            : undefined },
        { size: 70, values: function (u, vals) { return vals.map(fmt); } }
      ],
      series: series,
      plugins: spec.marks.length ? [marksPlugin(spec.marks)] : []
    };
    new uPlot(opts, data, fig);
    fig.parentNode.setAttribute("data-rendered-series", String(spec.series.length));
    drawn[spec.id] = { series: spec.series.map(function (s) { return s.label; }), points: spec.x.length };
  });
  window.powertuneCharts = drawn;
  // Milliseconds from the start of navigation until every chart is drawn, for the
  // page-size benchmark (read from the DOM that `chromium --dump-dom` prints).
  document.documentElement.setAttribute("data-rendered-ms", performance.now().toFixed(1));
})();
