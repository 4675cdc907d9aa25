// Completeness maps: selecting a cell with missing data shows its missing data IDs beside the map, without
// leaving the page.  Without scripts the cell is a plain link to the same list on a page of its own.
(function () {
  "use strict";
  function show(link, panel) {
    document.querySelectorAll("a.cell.selected").forEach(function (a) { a.classList.remove("selected"); });
    link.classList.add("selected");
    panel.hidden = false;
    var title = link.querySelector("title");  // a grid's cell carries its label only in its title
    var label = link.dataset.label || (title ? title.textContent.split(":")[0] : "");
    panel.textContent = "Loading the missing data IDs of " + (label || "this cell") + "…";
    fetch(link.getAttribute("href"), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (answer) {
        if (!answer.ok) { throw new Error("HTTP " + answer.status); }
        return answer.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var list = doc.querySelector("[data-testid=missing-list]");
        panel.replaceChildren();
        if (list) {
          panel.appendChild(document.importNode(list, true));
          var open = document.createElement("a");
          open.href = link.getAttribute("href");
          open.textContent = "Open this list on its own page";
          panel.appendChild(open);
        } else {
          panel.textContent = "The list could not be read.";
        }
        panel.focus();
      })
      .catch(function (err) { panel.textContent = "The list could not be loaded (" + err.message + ")."; });
  }
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.cell") : null;
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) { return; }
    var maps = link.closest("[data-missing-panel]");
    var panel = maps ? document.getElementById(maps.dataset.missingPanel) : null;
    if (!panel) { return; }
    event.preventDefault();
    panel.tabIndex = -1;
    show(link, panel);
  });
})();
