// Completeness maps: selecting a cell with missing data shows its missing data IDs beside the map, without
// leaving the page.  Without scripts the cell is a plain link to the same list on a page of its own.
(function () {
  "use strict";
  function show(link, panel) {
    document.querySelectorAll("a.cell.selected").forEach(function (a) {
      a.classList.remove("selected");
      a.removeAttribute("aria-current");
    });
    link.classList.add("selected");
    link.setAttribute("aria-current", "true");  // which cell the panel lists, for screen readers too
    panel.hidden = false;
    var title = link.querySelector("title");  // a grid's cell carries its label only in its title
    var label = link.dataset.label || (title ? title.textContent.split(":")[0] : "");
    panel.textContent = "Loading the missing data IDs of " + (label || "this cell") + "…";
    var url = new URL(link.getAttribute("href"), document.baseURI);
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (answer) {
        if (!answer.ok) { throw new Error("HTTP " + answer.status); }
        return answer.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var list = doc.querySelector("[data-testid=missing-list]");
        panel.replaceChildren();
        if (list) {
          list = document.importNode(list, true);
          // The list's page heading is a sub-heading here (the page's h1, the product's h2, then this)...
          list.querySelectorAll("h1").forEach(function (h1) {
            var h3 = document.createElement("h3");
            h3.replaceChildren.apply(h3, Array.from(h1.childNodes));
            h1.replaceWith(h3);
          });
          // ...and its links (the pager's "?page=2") lead where they did on the list's own page.
          list.querySelectorAll("a[href]").forEach(function (a) {
            a.href = new URL(a.getAttribute("href"), url).href;
          });
          panel.appendChild(list);
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
