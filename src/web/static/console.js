// rosterd web console: the little HTML cannot do on its own. Every screen
// works without this file; it adds select-all with its mixed state, the count
// of selected rows ("all N matching" when every page is selected), and the
// bulk confirmation in a native <dialog>.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const bulk = document.getElementById("bulk");
  const all = document.getElementById("select-page");
  const count = document.getElementById("selected-count");
  const dialog = document.getElementById("confirm-dialog");
  const matching = document.getElementById("select-matching");
  const boxes = () => Array.from(document.querySelectorAll('input[name="id"][form="bulk"]'));

  const refresh = () => {
    const b = boxes();
    const n = b.filter((x) => x.checked).length;
    if (all) {
      all.checked = n > 0 && n === b.length;
      all.indeterminate = n > 0 && n < b.length;
    }
    if (count) {
      if (matching && matching.checked) {
        count.textContent = `All ${matching.dataset.total} matching selected`;
      } else {
        count.textContent = n === 1 ? "1 selected" : `${n} selected`;
      }
    }
  };

  if (all) {
    all.hidden = false;
    all.addEventListener("change", () => {
      for (const b of boxes()) b.checked = all.checked;
      if (!all.checked && matching) matching.checked = false;
      refresh();
    });
  }
  for (const b of boxes()) {
    b.addEventListener("change", () => {
      // Unticking a row is no longer "all that match".
      if (!b.checked && matching) matching.checked = false;
      refresh();
    });
  }
  if (matching) {
    matching.addEventListener("change", () => {
      if (matching.checked) for (const b of boxes()) b.checked = true;
      refresh();
    });
  }
  if (count) refresh();

  if (bulk && dialog) {
    bulk.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = new URLSearchParams(new FormData(bulk));
      dialog.setAttribute("aria-busy", "true");
      try {
        // (`bulk.action` would be the select named "action".)
        const resp = await fetch(bulk.getAttribute("action"), {
          method: "POST",
          body,
          credentials: "same-origin",
        });
        const html = await resp.text();
        const doc = new DOMParser().parseFromString(html, "text/html");
        const part = doc.getElementById("preview") || doc.querySelector("main");
        dialog.replaceChildren(document.importNode(part, true));
        const title = dialog.querySelector("h1");
        if (title && title.id) dialog.setAttribute("aria-labelledby", title.id);
        dialog.removeAttribute("aria-busy");
        for (const c of dialog.querySelectorAll("[data-close]")) {
          c.addEventListener("click", (e) => {
            e.preventDefault();
            dialog.close();
          });
        }
        dialog.showModal();
        const cancel = dialog.querySelector("[autofocus]");
        if (cancel) cancel.focus();
      } catch (e) {
        // The page without the script: submit for real (the preview page).
        dialog.removeAttribute("aria-busy");
        bulk.submit();
      }
    });
  }
});
