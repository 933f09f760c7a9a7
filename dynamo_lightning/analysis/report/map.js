/* The hoverable charts of report.html (their data: interactive.py; docs/report.md).
 *
 * Each [data-chart] box holds one chart as JSON. This draws its items (member points or
 * grid cells) as SVG, colours them by the key chosen in the box's <select> (a palette and
 * legend for categories, a viridis scale for numbers) and shows an item's tooltip while
 * the pointer is near it or it has keyboard focus. Report strings go in only through
 * textContent, so none is ever parsed as HTML. It requests nothing and needs no library.
 * If a chart fails, its box stays hidden and its PNGs stay open below it.
 */
(function () {
  "use strict";
  var W = 640, H = 440, LEFT = 66, RIGHT = 16, TOP = 14, BOTTOM = 48;  // viewBox, margins
  var PICK = 14;  // the nearest point within this many viewBox units of the pointer is hovered
  var LEGEND_MAX = 24;  // categories listed in a legend; the rest are counted
  var NA = "#c8c8c8";
  // matplotlib's tab20; its even entries are tab10, the palette of the PNG maps
  var TAB20 = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728",
    "#ff9896", "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f",
    "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5"];
  var VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89",
    "#35b779", "#6ece58", "#b5de2b", "#fde725"];

  function svgChild(parent, tag, attrs) {
    var node = document.createElementNS(parent.namespaceURI, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return parent.appendChild(node);
  }

  function htmlChild(parent, tag, cls, text) {
    var node = parent.appendChild(document.createElement(tag));
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(v) {
    var a = Math.abs(v);
    return a >= 1e4 || (a > 0 && a < 1e-3) ? v.toExponential(2) : String(+v.toFixed(3));
  }

  function rgb(hex) {
    return [1, 3, 5].map(function (k) { return parseInt(hex.substr(k, 2), 16); });
  }

  function ramp(t) {  // viridis at t in [0, 1], linear between its stops
    var x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
    var i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
    var a = rgb(VIRIDIS[i]), b = rgb(VIRIDIS[i + 1]);
    return "rgb(" + a.map(function (v, k) { return Math.round(v + f * (b[k] - v)); }) + ")";
  }

  function categoryColour(c, code) {
    if (c.order[code] === "n/a") return NA;
    return c.order.length <= 10 ? TAB20[2 * code] : TAB20[code % 20];
  }

  function colour(c, i) {
    if (c.kind === "category") return categoryColour(c, c.codes[i]);
    var v = c.values[i], lo = c.range[0], hi = c.range[1];
    return v === null ? NA : ramp(hi > lo ? (v - lo) / (hi - lo) : 0.5);
  }

  function scales(chart) {  // data -> viewBox, framing the items (whole cells) and overlay
    var half = chart.cell ? [chart.cell[0] / 2, chart.cell[1] / 2] : [0, 0];
    var points = chart.xy.concat(chart.overlay);
    var ext = [0, 1].map(function (k) {
      var values = points.map(function (p) { return p[k]; });
      var lo = Math.min.apply(null, values) - half[k], hi = Math.max.apply(null, values) + half[k];
      var pad = chart.cell ? 0 : (hi - lo) * 0.06 || 1;
      return [lo - pad, hi + pad];
    });
    return {
      ext: ext,
      x: function (v) { return LEFT + (v - ext[0][0]) / (ext[0][1] - ext[0][0]) * (W - LEFT - RIGHT); },
      y: function (v) { return H - BOTTOM - (v - ext[1][0]) / (ext[1][1] - ext[1][0]) * (H - TOP - BOTTOM); }
    };
  }

  function ticks(lo, hi) {  // about five round values in [lo, hi]
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / 5)));
    step *= [1, 2, 5, 10].find(function (m) { return (hi - lo) / (step * m) <= 6; });
    var out = [];
    for (var k = Math.ceil(lo / step); k * step <= hi; k++) out.push(+(k * step).toPrecision(12));
    return out;
  }

  function label(g, x, y, anchor, text) {
    svgChild(g, "text", {x: x, y: y, "text-anchor": anchor}).textContent = text;
  }

  function drawAxes(svg, s, names) {
    var g = svgChild(svg, "g", {"class": "axes"});
    svgChild(g, "rect", {x: LEFT, y: TOP, width: W - LEFT - RIGHT, height: H - TOP - BOTTOM});
    ticks(s.ext[0][0], s.ext[0][1]).forEach(function (v) {
      svgChild(g, "line", {x1: s.x(v), x2: s.x(v), y1: H - BOTTOM, y2: H - BOTTOM + 4});
      label(g, s.x(v), H - BOTTOM + 17, "middle", fmt(v));
    });
    ticks(s.ext[1][0], s.ext[1][1]).forEach(function (v) {
      svgChild(g, "line", {x1: LEFT - 4, x2: LEFT, y1: s.y(v), y2: s.y(v)});
      label(g, LEFT - 7, s.y(v) + 4, "end", fmt(v));
    });
    label(g, (LEFT + W - RIGHT) / 2, H - 10, "middle", names[0]);
    var middle = (TOP + H - BOTTOM) / 2;
    label(g, 0, 0, "middle", names[1]);
    g.lastChild.setAttribute("transform", "translate(16 " + middle + ") rotate(-90)");
  }

  function drawItems(svg, chart, s) {
    var g = svgChild(svg, "g", {"class": "items"});
    return chart.xy.map(function (p, i) {
      var attrs = {"data-i": i, tabindex: 0, "aria-label": chart.titles[i]};
      if (chart.shape !== "cell") {
        attrs.cx = s.x(p[0]); attrs.cy = s.y(p[1]); attrs.r = 5;
        return svgChild(g, "circle", attrs);
      }
      var w = chart.cell[0] / 2, h = chart.cell[1] / 2;
      attrs.x = s.x(p[0] - w); attrs.y = s.y(p[1] + h);
      attrs.width = s.x(p[0] + w) - attrs.x; attrs.height = s.y(p[1] - h) - attrs.y;
      return svgChild(g, "rect", attrs);
    });
  }

  function drawOverlay(svg, chart, s) {  // the members on the topology map, not hoverable
    var g = svgChild(svg, "g", {"class": "overlay"});
    chart.overlay.forEach(function (p) {
      svgChild(g, "circle", {cx: s.x(p[0]), cy: s.y(p[1]), r: 3.5});
    });
  }

  function drawLegend(legend, c) {
    legend.textContent = "";
    htmlChild(legend, "b", null, c.name);
    function swatch(fill, text) {
      var item = htmlChild(legend, "span", "key");
      htmlChild(item, "i").style.background = fill;
      item.appendChild(document.createTextNode(text));
    }
    if (c.kind === "category") {
      c.order.slice(0, LEGEND_MAX).forEach(function (text, code) {
        swatch(categoryColour(c, code), text);
      });
      if (c.order.length > LEGEND_MAX) {
        htmlChild(legend, "span", "key", "+ " + (c.order.length - LEGEND_MAX) + " more");
      }
      return;
    }
    htmlChild(legend, "span", "key", fmt(c.range[0]));
    htmlChild(legend, "span", "bar").style.background =
      "linear-gradient(to right, " + VIRIDIS.join(", ") + ")";
    htmlChild(legend, "span", "key", fmt(c.range[1]));
    if (c.values.indexOf(null) >= 0) swatch(NA, "n/a");
  }

  function fillTip(tip, chart, i) {
    tip.textContent = "";
    htmlChild(tip, "b", null, chart.titles[i]);
    var table = htmlChild(tip, "table");
    chart.rows[i].forEach(function (row) {
      var tr = htmlChild(table, "tr");
      htmlChild(tr, "th", null, row[0]);
      htmlChild(tr, "td", null, row[1]);
    });
  }

  function placeTip(box, tip, node) {  // beside the item, inside the box where it fits
    var b = box.getBoundingClientRect(), n = node.getBoundingClientRect();
    var left = n.right - b.left + 10;
    if (left + tip.offsetWidth > box.clientWidth) left = n.left - b.left - 10 - tip.offsetWidth;
    var top = Math.min(n.top - b.top - 8, box.clientHeight - tip.offsetHeight);
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = Math.max(0, top) + "px";
  }

  function nearest(svg, items, event) {
    var matrix = svg.getScreenCTM();
    if (!matrix) return null;
    var p = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
    var best = null, bestDistance = PICK * PICK;
    items.forEach(function (node, i) {
      var dx = node.cx.baseVal.value - p.x, dy = node.cy.baseVal.value - p.y;
      if (dx * dx + dy * dy < bestDistance) { best = i; bestDistance = dx * dx + dy * dy; }
    });
    return best;
  }

  function setup(box) {
    var chart = JSON.parse(box.querySelector("script.chart-data").textContent);
    var svg = box.querySelector("svg"), tip = box.querySelector(".tip");
    var legend = box.querySelector(".legend"), select = box.querySelector("select");
    var s = scales(chart);
    drawAxes(svg, s, chart.axes);
    var items = drawItems(svg, chart, s), current = null;
    drawOverlay(svg, chart, s);

    function paint() {
      var c = chart.colourings[select ? +select.value : chart.default];
      if (!c) return;
      items.forEach(function (node, i) { node.setAttribute("fill", colour(c, i)); });
      drawLegend(legend, c);
      if (current !== null) fillTip(tip, chart, current);
    }

    function show(i) {
      if (i === current) return;
      if (current !== null) items[current].classList.remove("on");
      current = i;
      tip.hidden = i === null;
      if (i === null) return;
      items[i].classList.add("on");
      fillTip(tip, chart, i);
      placeTip(box, tip, items[i]);
    }

    svg.addEventListener("pointermove", function (event) {
      var hit = event.target.getAttribute("data-i");
      show(chart.shape === "cell" ? (hit === null ? null : +hit) : nearest(svg, items, event));
    });
    svg.addEventListener("pointerleave", function () { show(null); });
    svg.addEventListener("focusin", function (event) {
      var hit = event.target.getAttribute("data-i");
      if (hit !== null) show(+hit);
    });
    svg.addEventListener("focusout", function () { show(null); });
    if (select) select.addEventListener("change", paint);
    paint();
    box.hidden = false;
    var statics = box.parentNode.querySelector("details.static");
    if (statics) statics.open = false;
  }

  document.querySelectorAll("[data-chart]").forEach(function (box) {
    try {
      setup(box);
    } catch (error) {
      console.error("report chart not drawn:", error);
    }
  });
})();
