// The dashboard's only script: draw the trend chart from the page's JSON, and re-show on a new choice.
(function () {
  "use strict";
  var form = document.getElementById("choose");
  if (form) {
    ["indicator", "period"].forEach(function (id) {
      var select = document.getElementById(id);
      if (select) { select.addEventListener("change", function () { form.submit(); }); }
    });
  }
  var source = document.getElementById("trend-data");
  var canvas = document.getElementById("trend-chart");
  if (!source || !canvas || typeof Chart === "undefined") { return; }
  var trend = JSON.parse(source.textContent);
  var colours = ["#08519c", "#969696"];
  new Chart(canvas, {
    type: "line",
    data: {
      labels: trend.labels,
      datasets: trend.series.map(function (s, i) {
        return { label: s.label, data: s.data, borderColor: colours[i % 2], backgroundColor: colours[i % 2],
                 spanGaps: false, tension: 0.2, pointRadius: 3 };
      })
    },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      scales: { y: { beginAtZero: true, title: { display: !!trend.unit, text: trend.unit } } },
      plugins: { legend: { position: "bottom" } }
    }
  });
  canvas.setAttribute("data-drawn", "true");
})();
