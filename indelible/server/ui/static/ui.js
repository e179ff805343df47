// Indelible web UI: the little script there is (the pages work without it).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // "Copy" buttons copy the text of the element their data-copy names.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.dataset.copy);
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.textContent.trim()).then(function () {
          button.textContent = "Copied";
        });
      }
    });
  });
  // Forms marked "confirm" ask first (revoking a key cannot be undone).
  document.querySelectorAll("form.confirm").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm || "Are you sure?")) {
        event.preventDefault();
      }
    });
  });
});
