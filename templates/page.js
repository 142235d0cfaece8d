(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("data").textContent);
  var steps = Array.prototype.slice.call(document.querySelectorAll("main > section.step"));
  var svg = document.querySelector("#network svg");
  var mode = document.getElementById("mode");
  var previous = document.getElementById("previous");
  var next = document.getElementById("next");
  var where = document.getElementById("where");
  var lit = [];
  var stepping = false;
  var current = 0;

  function fill(phrase, values) {
    return phrase.replace(/\{(\w+)\}/g, function (all, key) {
      return key in values ? String(values[key]) : all;
    });
  }

  // Light these elements of the network (and dim the other arrows).
  function light(ids) {
    lit.forEach(function (element) { element.classList.remove("on"); });
    lit = [];
    ids.forEach(function (id) {
      var element = document.getElementById(id);
      if (element && svg.contains(element)) {
        element.classList.add("on");
        lit.push(element);
      }
    });
    svg.classList.toggle("lit", lit.length > 0);
  }

  function focus(k) {
    steps.forEach(function (step, i) { step.classList.toggle("focus", i === k); });
  }

  // Step mode: the steps up to `current` show, the others wait.
  function show(k) {
    current = Math.max(0, Math.min(steps.length - 1, k));
    steps.forEach(function (step, i) {
      step.classList.toggle("later", stepping && i > current);
      step.classList.toggle("current", stepping && i === current);
    });
    previous.disabled = !stepping || current === 0;
    next.disabled = !stepping || current === steps.length - 1;
    where.textContent = stepping ? fill(data.words.step_of, {k: current + 1, n: steps.length}) : "";
    if (stepping) {
      light(data.lit[current] || []);
      steps[current].scrollIntoView({block: "nearest"});
    }
  }

  mode.addEventListener("click", function () {
    stepping = !stepping;
    document.body.classList.toggle("stepping", stepping);
    var other = mode.getAttribute("data-other");
    mode.setAttribute("data-other", mode.textContent);
    mode.textContent = other;
    if (!stepping) { light([]); }
    show(stepping ? 0 : current);
  });
  previous.addEventListener("click", function () { show(current - 1); });
  next.addEventListener("click", function () { show(current + 1); });
  document.addEventListener("keydown", function (event) {
    if (!stepping || event.altKey || event.ctrlKey || event.metaKey) { return; }
    if (event.key === "ArrowRight" || event.key === "PageDown") {
      show(current + 1);
      event.preventDefault();
    } else if (event.key === "ArrowLeft" || event.key === "PageUp") {
      show(current - 1);
      event.preventDefault();
    }
  });

  // A click in the network: light the chain-rule paths, go to the derivation.
  svg.addEventListener("click", function (event) {
    var element = event.target.closest("[id]");
    var click = element && data.clicks[element.id];
    if (!click) { light([]); focus(-1); return; }
    light(click.lit);
    if (click.step < 0) { focus(-1); return; }
    if (stepping && click.step > current) { show(click.step); light(click.lit); }
    focus(click.step);
    steps[click.step].scrollIntoView({block: "start"});
  });

  // A factor already computed: where it was.
  Array.prototype.forEach.call(document.querySelectorAll("mrow.known"), function (factor) {
    var k = data.known[Number(factor.getAttribute("data-known"))];
    if (k === undefined || k < 0) { return; }
    factor.setAttribute("title", fill(data.words.computed_in, {k: k + 1}));
    factor.addEventListener("mouseenter", function () {
      steps[k].classList.add("source");
      light(data.lit[k] || []);
    });
    factor.addEventListener("mouseleave", function () {
      steps[k].classList.remove("source");
      light([]);
    });
  });

  // The sections scroll to below the sticky figure.
  function measure() {
    var figure = document.getElementById("network");
    document.documentElement.style.setProperty("--figure", figure.offsetHeight + "px");
  }
  window.addEventListener("resize", measure);
  measure();
  show(0);
})();
