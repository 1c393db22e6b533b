/* The live board: every element with data-refresh="URL" is re-fetched every data-every seconds and its
   content replaced. Without JavaScript the page refreshes itself (a <noscript> meta refresh). */
(function () {
  "use strict";
  document.querySelectorAll("[data-refresh]").forEach(function (el) {
    var every = (parseFloat(el.getAttribute("data-every")) || 5) * 1000;
    function tick() {
      fetch(el.getAttribute("data-refresh"), {credentials: "same-origin", cache: "no-store"})
        .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.text(); })
        .then(function (html) { el.innerHTML = html; el.classList.remove("stale"); })
        .catch(function () { el.classList.add("stale"); })
        .then(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  });
})();
