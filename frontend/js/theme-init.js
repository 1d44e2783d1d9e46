// Runs before first paint (a classic script, not a module): a saved choice wins over prefers-color-scheme.
(function () {
  try {
    var saved = localStorage.getItem("prunescope-theme");
    if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;
  } catch (e) { /* storage may be disabled; the system theme applies */ }
})();
